"""Export a ternary checkpoint folder (or a shipped model such as tiny-adder) as an ONNX decoder:
standard opset 17+ ops that plain onnxruntime runs, every BitLinear as int8 activation
quantisation + MatMulInteger on int8 ternary weights + a float rescale, with Hugging Face
Optimum's decoder inputs and outputs (input_ids, attention_mask, position_ids,
past_key_values.N.key/value -> logits, present.N.key/value). Models over 2 GB keep their
weights in FILE_data beside FILE (ONNX external data)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import add_json, emit, json_on_stdout, output_file

HELP = "export a checkpoint as an ONNX decoder (MatMulInteger BitLinears, KV cache)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..host.onnx.export import DEFAULT_OPSET

    p.add_argument("--model", required=True, metavar="DIR",
                   help="checkpoint folder, or a shipped model's name (e.g. tiny-adder)")
    p.add_argument("-o", "--out", required=True, type=output_file, metavar="FILE",
                   help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, 17 or later (default: {DEFAULT_OPSET})")
    add_json(p)


def _bar(enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(desc="export", unit="layer", file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=None if enabled else True)


def _render(r: dict[str, Any]) -> str:
    mb = r["bytes"] / 1e6
    lines = [f"wrote {r['output']} ({mb:,.1f} MB): {r['model_type']} ({r['linear_class']}), "
             f"{r['layers']} layers, opset {r['opset']}, {r['nodes']:,} nodes, "
             f"{r['matmul_integer']} MatMulInteger, {r['seconds']:.1f} s"]
    if r["external_data"]:
        lines.append(f"weights in {r['external_data']} (ONNX external data, keep it beside "
                     "the model)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..host.onnx.export import export_onnx

    with _bar(not json_on_stdout(args)) as bar:
        def progress(i: int, n: int) -> None:
            bar.total = n
            bar.update(i - bar.n)

        result = export_onnx(args.model, args.out, opset=args.opset, progress=progress)
    info = result.as_dict()
    emit(args, info, lambda: _render(info))
    return 0
