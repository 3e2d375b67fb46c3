"""`tritium estimate`: tokens/s, utilisation and joules/token of an array on a BitNet model."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..cliutil import add_array_args

# The model needs K up to 6912 (2B-4T down_proj) and a decode-sized array by default.
ESTIMATE_DEFAULTS: dict[str, Any] = {"rows": 32, "cols": 32, "clock_mhz": 250.0}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate",
        help="estimate tokens/s and J/token of an array on a BitNet b1.58 model",
        description="Price every ternary matmul of a BitNet b1.58 model (prefill and decode) "
        "on an array configuration with the RTL-validated cycle model, a DRAM bandwidth and an "
        "energy table; report tokens/s, the DRAM roofline, utilisation and J/token.",
    )
    p.add_argument("--model", required=True, metavar="NAME_OR_DIR",
                   help="a named model (e.g. bitnet-b1.58-2B-4T) or a checkpoint folder "
                   "holding config.json")
    add_array_args(p, **ESTIMATE_DEFAULTS)
    # the array's own --dataflow, widened: "auto" lets the host pick per matmul
    p.set_defaults(dataflow="auto")
    for action in p._actions:
        if action.dest == "dataflow":
            action.help = ("dataflow per matmul: auto (the faster of ws and os for each "
                           "matmul), ws or os (default: auto)")
    # derived from --dram-gbps and --clock-mhz; None tells an explicit value apart
    p.set_defaults(dram_bytes_per_cycle=None)
    for action in p._actions:
        if action.dest == "dram_bytes_per_cycle":
            action.help = argparse.SUPPRESS
    p.add_argument("--dram-gbps", type=float, required=True, metavar="B",
                   help="DRAM bandwidth in GB/s (10^9 bytes/s)")
    p.add_argument("--node-nm", type=float, default=None, metavar="N",
                   help="technology node for the energy table (node scaling; default: the "
                   "table's own, 45 nm for the shipped Horowitz table)")
    p.add_argument("--prompt-len", type=int, default=128, metavar="P",
                   help="prompt tokens run as one prefill (default: 128)")
    p.add_argument("--gen-len", type=int, default=128, metavar="G",
                   help="tokens generated after the prompt (default: 128)")
    p.add_argument("--weight-bits", type=float, default=2.0, metavar="BITS",
                   help="packed bits per ternary weight in DRAM (2: HF/I2_S, 1.6: TL2; "
                   "default: 2)")
    p.add_argument("--sparsity", type=float, default=None, metavar="F",
                   help="fraction of zero ternary weights (default: counted from the "
                   "checkpoint's weights if the folder has them, else 1/3)")
    p.add_argument("--energy-table", type=Path, default=None, metavar="FILE",
                   help="JSON energy table (default: Horowitz 45 nm, shipped)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the estimate as JSON to FILE (atomically), or to stdout with "
                   "no FILE or '-'")
    p.add_argument("--plot", type=Path, default=None, metavar="DIR",
                   help="write PNG plots (per-layer cycles, roofline, energy) into DIR")
    p.set_defaults(func=run)


def _positive(name: str, value: float) -> None:
    from ..cli import CliError

    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise CliError(f"{name} must be > 0, got {value:g}")


def build(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import fields

    from ..cli import CliError
    from ..golden.config import ArrayConfig
    from ..golden.energy import EnergyTable
    from ..golden.memory import MemoryConfig, os_bytes_per_cycle
    from .estimate import (
        DATAFLOW_CHOICES,
        EstimateConfig,
        array_bytes_per_cycle,
        estimate,
        measure_nnz,
        resolve,
    )

    _positive("--clock-mhz", args.clock_mhz)
    _positive("--dram-gbps", args.dram_gbps)
    if args.node_nm is not None:
        _positive("--node-nm", args.node_nm)
    if args.dataflow not in DATAFLOW_CHOICES:
        raise CliError(f"--dataflow must be one of {', '.join(DATAFLOW_CHOICES)}, got "
                       f"{args.dataflow!r}")
    if args.prompt_len < 1:
        raise CliError(f"--prompt-len must be >= 1, got {args.prompt_len}")
    if args.gen_len < 0:
        raise CliError(f"--gen-len must be >= 0, got {args.gen_len}")
    if args.sparsity is not None and not 0 <= args.sparsity <= 1:
        raise CliError(f"--sparsity must be in 0..1, got {args.sparsity:g}")
    if not 0 < args.weight_bits <= 8:
        raise CliError(f"--weight-bits must be in (0, 8], got {args.weight_bits:g}")

    if getattr(args, "dram_bytes_per_cycle", None) is not None:
        raise CliError("estimate takes the DRAM bandwidth as --dram-gbps (with --clock-mhz); "
                       "drop --dram-bytes-per-cycle")
    mem = MemoryConfig(args.dram_gbps * 1e9 / (args.clock_mhz * 1e6), args.weight_bits)
    values = {f.name: getattr(args, f.name) for f in fields(ArrayConfig) if hasattr(args, f.name)}
    # The array is built for a concrete dataflow; "auto" is the host's choice per matmul.
    values["dataflow"] = "ws" if args.dataflow == "auto" else args.dataflow
    if args.dataflow == "os":
        os_bytes_per_cycle(mem)          # the clear error, before ArrayConfig's generic one
    values["dram_bytes_per_cycle"] = array_bytes_per_cycle(mem)
    cfg = ArrayConfig(**values)

    model, folder = resolve(args.model)
    table = EnergyTable.load(args.energy_table).at_node(args.node_nm)
    nnz = source = None
    if args.sparsity is None and folder is not None:
        nnz = measure_nnz(folder, model)
        source = f"counted from the weights in {folder}"
    ecfg = EstimateConfig(cfg, args.dram_gbps, dataflow=args.dataflow,
                          prompt_len=args.prompt_len, gen_len=args.gen_len,
                          weight_bits=args.weight_bits, zero_fraction=args.sparsity)
    return estimate(model, ecfg, table, nnz=nnz, nnz_source=source)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Temp file beside the target, then rename: a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        # mkstemp makes the file private; give it the permissions open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary(r: dict[str, Any]) -> str:
    c, d, p, e = r["config"], r["decode"], r["prefill"], r["energy"]
    a = c["array"]
    lines = [
        f"{r['model']['name']} on a {a['rows']}x{a['cols']} array at {a['clock_mhz']:g} MHz, "
        f"{c['memory']['dram_gbps']:g} GB/s DRAM ({c['memory']['dram_bytes_per_cycle']:.3g} "
        f"B/cycle), {c['memory']['weight_bits']:g}-bit weights, dataflow {c['dataflow']}",
        f"  decode : {d['tokens_per_s']:.2f} tok/s ({d['roofline_fraction']:.1%} of the DRAM "
        f"roofline {d['roofline_tokens_per_s']:.2f} tok/s), PE utilisation "
        f"{d['utilization']:.1%}, {e['decode_j_per_token'] * 1e3:.2f} mJ/token "
        f"[{', '.join(f'{k} x{v}' for k, v in d['dataflows'].items())}]",
        f"  prefill: {p['tokens_per_s']:.1f} tok/s over {p['tokens']} tokens, PE utilisation "
        f"{p['utilization']:.1%}, {e['prefill_j_per_token'] * 1e3:.3f} mJ/token "
        f"[{', '.join(f'{k} x{v}' for k, v in p['dataflows'].items())}]",
        "  decode energy/token: " + ", ".join(
            f"{k} {v * 1e3:.3g} mJ" for k, v in e["decode_groups_j_per_token"].items()),
        f"  LM head ({r['lm_head']['k']}x{r['lm_head']['n']} bf16) stays on the CPU: "
        f"excluded; streaming it over the same DRAM would cap decode at "
        f"{d['tokens_per_s_with_lm_head_dram']:.2f} tok/s",
        f"  for scale: bitnet-kv260 measured {r['comparison']['bitnet_kv260']['tokens_per_s']} "
        "tok/s on 2B-4T at 250 MHz / 16 GB/s",
    ]
    if r.get("plots"):
        lines.append("  plots: " + ", ".join(r["plots"]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = build(args)
    if args.plot is not None:
        from .plots import write_plots

        result["plots"] = [str(p) for p in write_plots(result, args.plot)]
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.json is not None:
        write_json_atomic(Path(args.json), result)
    print(summary(result))
    if args.json is not None:
        print(f"  json: {args.json}")
    return 0
