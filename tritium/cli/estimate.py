"""Price every ternary matmul of a BitNet b1.58 model (prefill and decode) on an array
configuration with the RTL-validated cycle model, a DRAM bandwidth and an energy table; report
tokens/s, the DRAM roofline, utilisation and J/token.

With --onnx FILE, price each node of an ONNX graph the accelerator would run (as `tritium run
--onnx` partitions it): cycles, MACs, zero skips and energy, with shapes from onnx shape
inference (--shape NAME=D1,D2,... or --inputs FILE.npz for dynamic dimensions)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from .options import AUTO, CliError, add_array_args, add_json, emit, output_dir

HOST_LINK_DEFAULT = 4.0   # GB/s: PCIe 2.0 x8 / a KV260's AXI HP port order of magnitude
DEFAULT_LEN = 128   # prompt and generated tokens when the user names neither
HELP = ("estimate tokens/s and J/token of an array on a BitNet b1.58 model (or cycles and "
        "energy per node of an ONNX graph)")

# The model needs K up to 6912 (2B-4T down_proj) and a decode-sized array by default.
ESTIMATE_DEFAULTS: dict[str, Any] = {"rows": 32, "cols": 32, "clock_mhz": 250.0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="NAME_OR_DIR",
                     help="a named model (e.g. bitnet-b1.58-2B-4T) or a checkpoint folder "
                     "holding config.json")
    add_onnx_arguments(p, src)
    # The DRAM bandwidth comes from --dram-gbps and --clock-mhz: --dram-bytes-per-cycle is
    # hidden and only there to be refused with a pointer to --dram-gbps.
    add_array_args(p, auto_dataflow=True, hide=("dram_bytes_per_cycle",), dataflow=AUTO,
                   **ESTIMATE_DEFAULTS)
    p.add_argument("--dram-gbps", type=float, default=None, metavar="B",
                   help="DRAM bandwidth in GB/s (10^9 bytes/s); required with --model (with "
                   "--onnx, default: the array's 16 bytes per clock)")
    p.add_argument("--node-nm", type=float, default=None, metavar="N",
                   help="technology node for the energy table (node scaling; default: the "
                   "table's own, 45 nm for the shipped Horowitz table)")
    for opt, what in (("--prompt-len", "prompt tokens run as one prefill"),
                      ("--gen-len", "tokens generated after the prompt")):
        p.add_argument(opt, type=int, default=None, metavar=opt[2].upper(),
                       help=f"{what} (default: {DEFAULT_LEN}, or half the model's context if "
                       "that is shorter)")
    p.add_argument("--weight-bits", type=float, default=None, metavar="BITS",
                   help="packed bits per ternary weight in DRAM (2: HF/I2_S, 1.6: base-3 or "
                   "TL2; default: --weight-packing's, 2 or 1.6)")
    p.add_argument("--sparsity", type=float, default=None, metavar="F",
                   help="fraction of zero ternary weights (default: counted from the "
                   "checkpoint's weights if the folder has them, else 1/3)")
    p.add_argument("--energy-table", type=Path, default=None, metavar="FILE",
                   help="JSON energy table (default: Horowitz 45 nm, shipped)")
    p.add_argument("--port-latency", type=int, default=None, metavar="CYCLES",
                   help="os dataflow: cycles the memory behind the os top's port takes to "
                   "answer beyond the next cycle (default: 0, an ideal port)")
    p.add_argument("--port-stall-ppm", type=int, default=None, metavar="PPM",
                   help="os dataflow: cycles per million the port refuses a request "
                   "(random back-pressure; default: 0)")
    host = p.add_argument_group("host", "the host's share of a token (end_to_end); without "
                                "these the host is calibrated once and cached in "
                                "$TRITIUM_BUILD/host_calibration.json")
    host.add_argument("--calibrate-host", action="store_true",
                      help="measure this machine's host parameters now (refreshes the cache)")
    host.add_argument("--host-gbps", type=float, default=None, metavar="B",
                      help="host memory bandwidth in GB/s (replaces the calibrated value)")
    host.add_argument("--host-gflops", type=float, default=None, metavar="F",
                      help="host float32 compute in GFLOP/s (replaces the calibrated value)")
    host.add_argument("--link-gbps", type=float, default=None, metavar="B",
                      help="host <-> accelerator link in GB/s (default: "
                      f"{HOST_LINK_DEFAULT:g})")
    host.add_argument("--context", type=int, default=None, metavar="N",
                      help="KV cache length L a decode token attends over (default: the "
                      "prompt length)")
    add_json(p)
    p.add_argument("--plot", type=output_dir, default=None, metavar="DIR",
                   help="write PNG plots (per-layer cycles, roofline, energy) into DIR "
                   "(created if missing)")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise CliError(f"{name} must be > 0, got {value:g}")


def build(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import fields

    from ..golden.config import ArrayConfig
    from ..golden.energy import EnergyTable
    from ..golden.memory import PACKING_BITS, MemoryConfig, os_bytes_per_cycle
    from ..host.estimate import (
        DATAFLOW_CHOICES,
        EstimateConfig,
        array_bytes_per_cycle,
        estimate,
        measure_nnz,
        resolve,
    )

    if args.dram_gbps is None:
        raise CliError("estimate --model needs --dram-gbps, the DRAM bandwidth in GB/s")
    _positive("--clock-mhz", args.clock_mhz)
    _positive("--dram-gbps", args.dram_gbps)
    if args.node_nm is not None:
        _positive("--node-nm", args.node_nm)
    if args.dataflow not in DATAFLOW_CHOICES:
        raise CliError(f"--dataflow must be one of {', '.join(DATAFLOW_CHOICES)}, got "
                       f"{args.dataflow!r}")
    if args.prompt_len is not None and args.prompt_len < 1:
        raise CliError(f"--prompt-len must be >= 1, got {args.prompt_len}")
    if args.gen_len is not None and args.gen_len < 0:
        raise CliError(f"--gen-len must be >= 0, got {args.gen_len}")
    if args.sparsity is not None and not 0 <= args.sparsity <= 1:
        raise CliError(f"--sparsity must be in 0..1, got {args.sparsity:g}")
    for opt in ("host_gbps", "host_gflops", "link_gbps"):
        if getattr(args, opt) is not None:
            _positive("--" + opt.replace("_", "-"), getattr(args, opt))
    if args.context is not None and args.context < 1:
        raise CliError(f"--context must be >= 1, got {args.context}")
    if args.weight_bits is None:
        args.weight_bits = PACKING_BITS.get(args.weight_packing, 2.0)
    if not 0 < args.weight_bits <= 8:
        raise CliError(f"--weight-bits must be in (0, 8], got {args.weight_bits:g}")
    port = os_port(args)

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
    default_len = min(DEFAULT_LEN, max(1, model.max_position_embeddings // 2))
    ecfg = EstimateConfig(cfg, args.dram_gbps, dataflow=args.dataflow, host=host_params(args),
                          context=args.context,
                          prompt_len=default_len if args.prompt_len is None else args.prompt_len,
                          gen_len=default_len if args.gen_len is None else args.gen_len,
                          weight_bits=args.weight_bits, zero_fraction=args.sparsity,
                          os_port=port)
    return estimate(model, ecfg, table, nnz=nnz, nnz_source=source)


def os_port(args: argparse.Namespace) -> Any:
    """The os memory port --port-latency and --port-stall-ppm describe (ideal without them)."""
    from ..golden.os_port import PortTiming

    given = {"latency": args.port_latency, "stall_ppm": args.port_stall_ppm}
    given = {k: v for k, v in given.items() if v is not None}
    if given and args.dataflow == "ws":
        raise CliError("--port-latency and --port-stall-ppm describe the os dataflow's memory "
                       "port; use --dataflow os (or auto), or drop them")
    for name, v in given.items():
        if v < 0 or (name == "stall_ppm" and v >= 1_000_000):
            limit = "0..999999" if name == "stall_ppm" else ">= 0"
            raise CliError(f"--port-{name.replace('_', '-')} must be {limit}, got {v}")
    return PortTiming(**given)


def host_params(args: argparse.Namespace) -> Any:
    """Measured (cached unless --calibrate-host) unless all of memory and compute are given;
    each given value replaces its measured one."""
    from dataclasses import replace

    from ..host.hostcost import HostParams, cached_calibration

    link = HOST_LINK_DEFAULT if args.link_gbps is None else args.link_gbps
    if args.host_gbps is not None and args.host_gflops is not None and not args.calibrate_host:
        return HostParams(args.host_gbps, args.host_gflops, link, source="given")
    p = cached_calibration(force=args.calibrate_host)
    given = {k: v for k, v in (("memory_gbps", args.host_gbps),
                                ("compute_gflops", args.host_gflops)) if v is not None}
    source = p.source + (f"; given: {', '.join(given)}" if given else "")
    return replace(p, link_gbps=link, source=source, **given)


def summary(r: dict[str, Any]) -> str:
    c, d, p, e = r["config"], r["decode"], r["prefill"], r["energy"]
    x = r["end_to_end"]
    h = x["host"]
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
        f"  end to end (host + link, context {x['context']}): decode "
        f"{x['decode_tokens_per_s']:.2f} tok/s vs {d['tokens_per_s']:.2f} accelerator-only, "
        f"bottleneck {x['bottleneck']}; prefill {x['prefill_tokens_per_s']:.1f} tok/s "
        f"(array peak {p['peak_tokens_per_s']:.1f})",
        "    host per token: " + ", ".join(f"{k} {v * 1e3:.3g} ms"
                                           for k, v in x["host_seconds_per_token"].items())
        + f" [host {h['memory_gbps']:.3g} GB/s, {h['compute_gflops']:.3g} GFLOP/s, link "
        f"{h['link_gbps']:g} GB/s; {x['host_source']}]",
        f"  for scale: bitnet-kv260 measured {r['comparison']['bitnet_kv260']['tokens_per_s']} "
        "tok/s on 2B-4T at 250 MHz / 16 GB/s",
    ]
    if r.get("plots"):
        lines.append("  plots: " + ", ".join(r["plots"]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.onnx is not None:
        result = build_onnx(args)
        emit(args, result, lambda: onnx_summary(result))
        return 0
    result = build(args)
    if args.plot is not None:
        from ..host.plots import write_plots

        result["plots"] = [str(p) for p in write_plots(result, args.plot)]
    emit(args, result, lambda: summary(result))
    return 0


# --- ONNX graphs ---------------------------------------------------------------------------

def add_onnx_arguments(p: argparse.ArgumentParser, src: Any) -> None:
    src.add_argument("--onnx", type=Path, metavar="FILE",
                     help="an ONNX graph: cycles and energy of each node the accelerator "
                     "would run (see `tritium run --onnx`)")
    g = p.add_argument_group("ONNX graphs", "input shapes for --onnx when the graph's are "
                             "dynamic")
    g.add_argument("--shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="the shape of graph input NAME, e.g. x=1,3,32,32 (repeatable)")
    g.add_argument("--inputs", type=Path, default=None, metavar="FILE.npz",
                   help="take the input shapes from these arrays (as `tritium run --onnx`)")


def parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """["x=1,3,8,8"] -> {"x": (1, 3, 8, 8)}; a malformed entry is one line naming it."""
    out: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, eq, dims = item.partition("=")
        try:
            if not (eq and name):
                raise ValueError
            out[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise CliError(f"--shape {item!r} must be NAME=D1,D2,... with integer "
                           "dimensions, e.g. x=1,3,32,32") from None
    return out


def build_onnx(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import fields

    from ..golden.config import ArrayConfig
    from ..golden.energy import EnergyTable
    from ..golden.memory import PACKING_BITS, MemoryConfig
    from ..host.estimate import DATAFLOW_CHOICES, EstimateConfig, array_bytes_per_cycle
    from ..host.onnx.graph_estimate import estimate_onnx
    from .run import load_npz

    for opt in ("prompt_len", "gen_len", "sparsity", "context", "plot", "host_gbps",
                "host_gflops", "link_gbps", "port_latency", "port_stall_ppm"):
        if getattr(args, opt, None) is not None:
            raise CliError(f"--{opt.replace('_', '-')} is for --model; an ONNX graph's "
                           "weights and shapes come from the graph")
    _positive("--clock-mhz", args.clock_mhz)
    if args.dram_gbps is not None:
        _positive("--dram-gbps", args.dram_gbps)
    if args.node_nm is not None:
        _positive("--node-nm", args.node_nm)
    if args.dataflow not in DATAFLOW_CHOICES:
        raise CliError(f"--dataflow must be one of {', '.join(DATAFLOW_CHOICES)}, got "
                       f"{args.dataflow!r}")
    if args.weight_bits is None:
        args.weight_bits = PACKING_BITS.get(args.weight_packing, 2.0)
    if not 0 < args.weight_bits <= 8:
        raise CliError(f"--weight-bits must be in (0, 8], got {args.weight_bits:g}")
    if getattr(args, "dram_bytes_per_cycle", None) is not None:
        raise CliError("estimate takes the DRAM bandwidth as --dram-gbps (with --clock-mhz); "
                       "drop --dram-bytes-per-cycle")
    values = {f.name: getattr(args, f.name) for f in fields(ArrayConfig)
              if getattr(args, f.name, None) is not None}
    values["dataflow"] = "ws" if args.dataflow == "auto" else args.dataflow
    if args.dram_gbps is not None:
        mem = MemoryConfig(args.dram_gbps * 1e9 / (args.clock_mhz * 1e6), args.weight_bits)
        values["dram_bytes_per_cycle"] = array_bytes_per_cycle(mem)
    cfg = ArrayConfig(**values)
    shapes = {}
    if args.inputs is not None:
        shapes = {k: tuple(v.shape) for k, v in load_npz(args.inputs, "--inputs").items()}
    shapes.update(parse_shapes(args.shape))
    table = EnergyTable.load(args.energy_table).at_node(args.node_nm)
    ecfg = EstimateConfig(cfg, args.dram_gbps, dataflow=args.dataflow,
                          weight_bits=args.weight_bits)
    return estimate_onnx(args.onnx, ecfg, table, shapes)


def onnx_summary(r: dict[str, Any]) -> str:
    a, t = r["array"], r["total"]
    part = r["partition"]
    lines = [f"{r['onnx']} on a {a['rows']}x{a['cols']} array at {a['clock_mhz']:g} MHz, "
             f"{r['memory']['dram_bytes_per_cycle']:.3g} B/cycle DRAM, dataflow "
             f"{r['dataflow']}: {len(part['accelerator'])} accelerator nodes, "
             f"{len(part['cpu'])} CPU nodes"]
    head = f"  {'node':<20} {'op':<13} {'cycles':>12} {'MACs':>12} {'zero skips':>12} " \
           f"{'energy uJ':>10}"
    lines.append(head)
    for n in [*r["nodes"], {"node": "total", "op": "", **t}]:
        lines.append(f"  {n['node']:<20} {n['op']:<13} {n['cycles']:>12,.0f} "
                     f"{n['macs']:>12,} {n['zero_skips']:>12,} {n['energy_j'] * 1e6:>10.4g}")
    lines.append(f"  {t['seconds'] * 1e6:.4g} us on the accelerator; energy: " + ", ".join(
        f"{k} {v * 1e6:.3g} uJ" for k, v in r["energy_groups_j"].items()))
    for node, why in part["reasons"].items():
        lines.append(f"  cpu {node}: {why}")
    return "\n".join(lines)
