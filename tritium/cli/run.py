"""Load a Hugging Face BitNet b1.58 checkpoint folder (config.json + *.safetensors), generate
tokens greedily with every BitLinear matmul on the chosen backend (golden: NumPy; rtl: the
Verilator-simulated accelerator; board: an FPGA over its serial link), and print the result
and a per-layer report of tiles, cycles, MACs and zero-weight skips.

With --onnx FILE --inputs FILE.npz, run any ONNX graph instead: its ternary layers on the
backend, everything else in onnxruntime (tritium.host.OnnxModel); print the partition and the
per-node report, and with -o write the outputs to a .npz."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..boards.protocol import DEFAULT_BAUD
from ..golden.config import ArrayConfig
from ..host import zoo
from .options import (
    AUTO,
    CliError,
    add_array_args,
    add_json,
    array_from_args,
    emit,
    json_on_stdout,
    output_file,
)

HELP = ("run a BitNet b1.58 checkpoint, or an ONNX graph, with every ternary matmul on a "
        "backend")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="checkpoint folder (or give --onnx)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", metavar="TEXT",
                     help="prompt text (needs tokenizer.json in the model folder)")
    src.add_argument("--tokens", metavar="IDS", help="prompt token ids, e.g. 1,2,3")
    p.add_argument("--max-new-tokens", type=int, default=8, metavar="N",
                   help="tokens to generate (default: 8)")
    p.add_argument("--backend", default="golden", metavar="NAME",
                   help="golden, rtl or board (default: golden)")
    p.add_argument("--port", metavar="DEV",
                   help="serial port of the board (backend board), e.g. /dev/ttyUSB1")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                   help=f"serial baud rate for backend board; the bitstream's, as `tritium "
                   f"build --baud` set it (default: the boards' default, {DEFAULT_BAUD})")
    p.add_argument("--no-eos", action="store_true",
                   help="keep generating past an end-of-sequence token")
    add_array_args(p, auto_dataflow=True, rows=4, cols=4)
    add_json(p)
    onnx = p.add_argument_group("ONNX graphs", "run an ONNX graph instead of a checkpoint")
    onnx.add_argument("--onnx", type=Path, metavar="FILE",
                      help="ONNX model: ternary MatMulInteger/ConvInteger and QONNX-quantised "
                      "MatMul/Gemm/Conv on the backend, the rest in onnxruntime")
    onnx.add_argument("--inputs", type=Path, metavar="FILE.npz",
                      help="the graph's inputs, one array per input name (numpy.savez)")
    onnx.add_argument("-o", "--output", type=output_file, metavar="OUT.npz",
                      help="write the graph's outputs here, one array per output name")
    # run() reports a missing --model or prompt the way argparse reports required options
    p.set_defaults(parser=p)


def parse_tokens(text: str) -> list[int]:
    """"1, 2,3" -> [1, 2, 3]; an empty or non-integer entry is an error naming it."""
    entries = [t.strip() for t in text.split(",")]
    if not any(entries):
        raise CliError("--tokens is empty: give at least one token id")
    ids = []
    for i, entry in enumerate(entries, 1):
        try:
            ids.append(int(entry))
        except ValueError:
            what = "empty" if entry == "" else f"{entry!r}"
            raise CliError(f"--tokens must be comma-separated integers; entry {i} of "
                           f"{text!r} is {what}") from None
    return ids


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    # disable=None: tqdm draws only on a terminal, so logs and pipes get no bar noise
    return tqdm(total=total, desc=desc, unit="tok" if desc == "generate" else "layer",
                file=sys.stderr, disable=None if enabled else True, leave=False,
                dynamic_ncols=True)


def _fmt(n: int | float) -> str:
    return f"{n:,}" if isinstance(n, int) else f"{n:.3f}"


_COLS = ["calls", "tiles", "cycles", "macs", "zero_skips", "seconds"]
_HEAD = ["calls", "tiles", "cycles", "MACs", "zero skips", "backend s"]


def _table(first: str, rows: list[tuple[str, dict[str, Any]]]) -> str:
    cells = [[name] + [_fmt(d[c]) if c in d else "-" for c in _COLS] for name, d in rows]
    head = [first, *_HEAD]
    widths = [max(len(r[i]) for r in [head, *cells]) for i in range(len(head))]
    def line(r: list[str]) -> str:
        return "  ".join([r[0].ljust(widths[0])]
                         + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)])

    lines = [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
    return "\n".join(lines)


def report_table(stats: dict[str, Any]) -> str:
    """Per-layer table (rows: layers, then the total) from ModelStats.as_dict()."""
    rows = [(str(layer["layer"]), layer["total"]) for layer in stats["layers"]]
    return _table("layer", [*rows, ("total", stats["total"])])


def projection_table(stats: dict[str, Any]) -> str:
    """The same counts per projection, summed over the layers."""
    sums: dict[str, dict[str, Any]] = {}
    for layer in stats["layers"]:
        for proj, d in layer["projections"].items():
            acc = sums.setdefault(proj, {})
            for c in _COLS:
                if c in d:
                    acc[c] = acc.get(c, 0) + d[c]
    return _table("projection", list(sums.items()))


def run(args: argparse.Namespace) -> int:
    from ..host.backends import backend_names
    from ..host.model import BitNetModel

    if args.backend not in backend_names():
        raise CliError(f"unknown backend {args.backend!r}; known backends: "
                       f"{', '.join(backend_names())}")
    if args.onnx is not None:
        return run_onnx(args)
    for opt in ("inputs", "output"):
        if getattr(args, opt) is not None:
            raise CliError(f"--{opt} goes with --onnx FILE; a checkpoint (--model) takes "
                           "--prompt or --tokens")
    if args.model is None:
        args.parser.error("the following arguments are required: --model (or --onnx)")
    if args.prompt is None and args.tokens is None:
        args.parser.error("one of the arguments --prompt --tokens is required")
    if args.max_new_tokens < 0:
        raise CliError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    model_dir = zoo.resolve(args.model) or Path(args.model)
    if args.prompt is not None:
        if args.prompt == "":
            raise CliError("--prompt is empty")
        if not (model_dir / "tokenizer.json").is_file():
            raise CliError(f"--prompt needs {model_dir / 'tokenizer.json'}, which does not "
                           "exist; give token ids with --tokens instead")
    prompt_ids = parse_tokens(args.tokens) if args.tokens is not None else None
    auto = args.dataflow == AUTO
    cfg, opts = _backend_setup(args)
    show = not json_on_stdout(args)

    if args.backend == "rtl" and show:
        print(f"rtl: building (or reusing) the Verilator model of {cfg.name()} ...",
              file=sys.stderr)
    t0 = time.perf_counter()
    with _bar(0, "load", show) as bar:
        def loaded(i: int, n: int) -> None:
            bar.total = n
            bar.update(1)

        model = BitNetModel.from_pretrained(model_dir, backend=args.backend, array=cfg,
                                            progress=loaded, **opts)
    load_s = time.perf_counter() - t0
    with model:
        ids = prompt_ids if prompt_ids is not None else model.encode(args.prompt)
        t1 = time.perf_counter()
        with _bar(args.max_new_tokens, "generate", show) as bar:
            new = model.generate(ids, args.max_new_tokens, stop_at_eos=not args.no_eos,
                                 on_token=lambda _t: bar.update(1))
        gen_s = time.perf_counter() - t1
        text = model.decode(new) if model.tokenizer is not None else None
        prompt_text = model.decode(ids) if model.tokenizer is not None else None
        stats = model.stats.as_dict()
        mcfg = model.config
        cfg = model.backend.array   # the board's own array when the board chose it
        # The serial link's counters and where its time went (boards.host.LinkStats).
        link_stats = getattr(getattr(model.backend, "device", None), "stats", None)
        link = link_stats.as_dict() if hasattr(link_stats, "as_dict") else None

    result = {
        "model": str(model_dir),
        "config": {"layers": mcfg.num_hidden_layers, "hidden": mcfg.hidden_size,
                   "intermediate": mcfg.intermediate_size, "heads": mcfg.num_attention_heads,
                   "kv_heads": mcfg.num_key_value_heads, "vocab": mcfg.vocab_size},
        "backend": args.backend,
        "array": cfg.to_dict(),
        "prompt_tokens": [int(i) for i in ids],
        "new_tokens": new,
        "prompt_text": prompt_text,
        "text": text,
        "seconds": {"load": round(load_s, 3), "generate": round(gen_s, 3)},
        "stats": stats,
        "dataflow": AUTO if auto else cfg.dataflow,
        "dataflow_calls": getattr(model.backend, "dataflow_calls", None),
        "dataflow_cycles": getattr(model.backend, "dataflow_cycles", None),
        "link": link,
    }
    emit(args, result, lambda: _report(result, cfg, gen_s))
    return 0


def _backend_setup(args: argparse.Namespace) -> tuple[ArrayConfig | None, dict[str, Any]]:
    """The array and backend options --backend, --dataflow and the board options ask for."""
    opts: dict[str, Any] = {}
    auto = args.dataflow == AUTO
    if auto:   # one array per dataflow; each matmul on the faster one
        opts["dataflow"] = AUTO
    cfg = array_from_args(args, dataflow="ws") if auto else array_from_args(args)
    if args.backend == "board":
        if not args.port:
            raise CliError("--backend board needs --port, the board's serial device")
        if args.baud <= 0:
            raise CliError(f"--baud must be a positive number of bits per second, got "
                           f"{args.baud}")
        # The board reports its own array in its identification frame; run on that one.
        return None, {"port": args.port, "baud": args.baud}
    return cfg, opts


def _report(r: dict[str, Any], cfg: ArrayConfig, gen_s: float) -> str:
    m, a, stats = r["config"], r["array"], r["stats"]
    ids, new = r["prompt_tokens"], r["new_tokens"]
    lines = [f"model   {r['model']}: {m['layers']} layers, hidden {m['hidden']}, "
             f"vocab {m['vocab']}"]
    if r["dataflow"] == AUTO:
        # The arrays share every option but the dataflow; say where the matmuls went.
        split = ", ".join(
            f"{df} {calls:,} matmuls / {r['dataflow_cycles'][df]:,} cycles"
            if r["dataflow_cycles"] else f"{df} {calls:,} matmuls"
            for df, calls in r["dataflow_calls"].items())
        lines.append(f"backend {r['backend']} on {a['rows']}x{a['cols']} PEs, "
                     f"a{a['act_bits']} acc{a['acc_bits']}, dataflow auto: {split}")
    else:
        lines.append(f"backend {r['backend']} on {cfg.name()} "
                     f"({a['rows']}x{a['cols']} PEs)")
    if r["text"] is not None:
        lines.append(f"prompt  {r['prompt_text']!r} ({len(ids)} tokens)")
        lines.append(f"output  {r['text']!r}")
    lines.append(f"tokens  {', '.join(map(str, ids))} -> {', '.join(map(str, new))}")
    rate = len(new) / gen_s if gen_s > 0 else float("inf")
    sec = r["seconds"]
    lines.append(f"time    load {sec['load']:.2f} s, generate {sec['generate']:.2f} s "
                 f"({rate:.2f} tokens/s); backend {stats['backend_seconds']:.2f} s, CPU ops "
                 f"{stats['cpu_seconds']:.2f} s")
    if r["link"] is not None:
        lines.append(link_line(r["link"]))
    return "\n\n".join(["\n".join(lines), report_table(stats), projection_table(stats)])


def link_line(k: dict[str, Any]) -> str:
    """The board link's summary from LinkStats.as_dict(): wire time and device time apart."""
    return (f"link    {k['baud']:,} baud: {k['frames']:,} frames, "
            f"{k['bytes_sent'] + k['bytes_received']:,} bytes; link {k['link_seconds']:.3f} s, "
            f"compute {k['compute_seconds']:.3f} s\n"
            f"retries {k['retries']:,} ({k['timeouts']:,} timeouts, {k['bad_frames']:,} bad "
            f"answers, {k['stale']:,} stale answers)" + _weights_line(k))


def _weights_line(k: dict[str, Any]) -> str:
    """Where the board's weights were (boards/resident.py): loaded once, or streamed, and why."""
    if "mode" not in k:
        return ""
    load = (f"; loaded once: {k['load_bytes']:,} bytes, {k['load_seconds']:.3f} s"
            if k["mode"] == "resident" else "")
    return f"\nweights {k['mode']}: {k['mode_reason']}{load}"


# --- ONNX graphs ---------------------------------------------------------------------------

def load_npz(path: Path, option: str) -> dict[str, Any]:
    """The arrays of a .npz file by name; a missing or unreadable file is one line."""
    import zipfile

    import numpy as np

    if not path.exists():
        raise CliError(f"{option}: {path} does not exist (expected a .npz of arrays by name)")
    if path.is_dir():
        raise CliError(f"{option}: {path} is a folder; give a .npz file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise CliError(f"{option}: {path} holds one array, not a .npz of arrays by "
                               "name (write it with numpy.savez)")
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CliError(f"{option}: {path} is not a .npz archive of arrays ({exc})") from None


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """All the arrays in one .npz, written atomically (never half a file)."""
    import io

    import numpy as np

    from ..golden.files import atomic_write

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


def run_onnx(args: argparse.Namespace) -> int:
    """tritium run --onnx FILE --inputs FILE.npz [-o OUT.npz]."""
    from ..host.onnx.model import OnnxModel

    for opt in ("model", "prompt", "tokens"):
        if getattr(args, opt) is not None:
            raise CliError(f"--onnx runs an ONNX graph; drop --{opt}, which is for checkpoints")
    if args.inputs is None:
        raise CliError("--onnx needs --inputs FILE.npz holding one array per graph input")
    feeds = load_npz(args.inputs, "--inputs")
    cfg, opts = _backend_setup(args)
    show = not json_on_stdout(args)
    if args.backend == "rtl" and show and cfg is not None:
        print(f"rtl: building (or reusing) the Verilator model of {cfg.name()} ...",
              file=sys.stderr)
    t0 = time.perf_counter()
    model = OnnxModel(args.onnx, backend=args.backend, array=cfg, **opts)
    load_s = time.perf_counter() - t0
    with model:
        t1 = time.perf_counter()
        outs = model.run(None, feeds)
        run_s = time.perf_counter() - t1
        names = model.output_names
        cfg = model.backend.array
        link_stats = getattr(getattr(model.backend, "device", None), "stats", None)
        result = {
            "onnx": str(args.onnx),
            "inputs": str(args.inputs),
            "backend": args.backend,
            "array": cfg.to_dict(),
            "dataflow": AUTO if args.dataflow == AUTO else cfg.dataflow,
            "partition": model.partition,
            "outputs": {n: {"shape": list(o.shape), "dtype": str(o.dtype)}
                        for n, o in zip(names, outs, strict=True)},
            "output_file": str(args.output) if args.output is not None else None,
            "seconds": {"load": round(load_s, 3), "run": round(run_s, 3)},
            "stats": model.stats.as_dict(),
            "dataflow_calls": getattr(model.backend, "dataflow_calls", None),
            "dataflow_cycles": getattr(model.backend, "dataflow_cycles", None),
            "link": link_stats.as_dict() if hasattr(link_stats, "as_dict") else None,
        }
    if args.output is not None:
        save_npz(args.output, dict(zip(names, outs, strict=True)))
    emit(args, result, lambda: _onnx_report(result, cfg))
    return 0


def _onnx_report(r: dict[str, Any], cfg: ArrayConfig) -> str:
    part, stats = r["partition"], r["stats"]
    where = cfg.name()
    if r["dataflow"] == AUTO and r["dataflow_calls"]:
        where = f"{cfg.rows}x{cfg.cols} PEs, dataflow auto: " + ", ".join(
            f"{df} {calls:,} matmuls" for df, calls in r["dataflow_calls"].items())
    lines = [f"graph   {r['onnx']} on backend {r['backend']}, {where}",
             f"nodes   {len(part['accelerator'])} on the accelerator "
             f"({', '.join(part['accelerator']) or 'none'}), {len(part['cpu'])} on the CPU "
             f"({part['onnxruntime_sessions']} onnxruntime sessions)"]
    for node, why in part["reasons"].items():
        lines.append(f"  cpu   {node}: {why}")
    for name, o in r["outputs"].items():
        lines.append(f"output  {name}: {o['dtype']} {o['shape']}")
    if r["output_file"]:
        lines.append(f"wrote   {r['output_file']}")
    sec = r["seconds"]
    lines.append(f"time    load {sec['load']:.2f} s, run {sec['run']:.2f} s; backend "
                 f"{stats['backend_seconds']:.2f} s, onnxruntime "
                 f"{stats['onnxruntime_seconds']:.2f} s")
    if r["link"] is not None:
        lines.append(link_line(r["link"]))
    rows = [*stats["nodes"].items(), ("total", stats["total"])]
    return "\n\n".join(["\n".join(lines), _table("node", rows)])
