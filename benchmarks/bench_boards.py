"""Each board's default bitstream, built from a clean folder as `tritium build --board B` builds
it: utilisation, Fmax against the board clock, wall time and tool versions.

  nice -n 15 python benchmarks/bench_boards.py                  # every board (ULX3S: ~30 min)
  nice -n 15 python benchmarks/bench_boards.py --board icebreaker

Results: benchmarks/board_results.json (one entry per board, rewritten after each build).
Builds run one at a time: nextpnr in WebAssembly is single-threaded and slow.

  nice -n 10 python benchmarks/bench_boards.py --resident ulx3s [--model tiny-adder] [--problems 20]

runs a shipped adder model on the board's own top level, Verilated, behind a pty at the board's
default baud, with the weight store the bitstream gets (boards/resident.py): every answer is
compared with golden's, and the time is split into the wire (bytes at the baud rate), the
board's work and the host's. Results: benchmarks/resident_results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tritium.boards.build import build
from tritium.boards.platforms import BOARDS
from tritium.golden.files import atomic_write_text
from tritium.hdl.fpga import DesignTooLarge, FpgaError

OUT = Path(__file__).with_name("board_results.json")
RESIDENT_OUT = Path(__file__).with_name("resident_results.json")


def bench(board: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"tritium_bench_{board}_"))
    start = time.monotonic()
    try:
        result = build(board, folder, log=lambda msg: print(f"{board}: {msg}", flush=True))
        entry: dict[str, Any] = {"built": True, "report": result.report}
    except DesignTooLarge as exc:
        entry = {"built": False, "error": str(exc), "overflows": exc.overflows}
    except FpgaError as exc:
        entry = {"built": False, "error": str(exc)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    entry["wall_s"] = round(time.monotonic() - start, 1)
    entry["config"] = BOARDS[board].default_array.to_dict()
    entry["machine"] = f"{platform.machine()} {platform.python_implementation()} " \
                       f"{platform.python_version()}"
    return entry


def wire_bytes(board: str, model: str, m: int) -> dict[str, int]:
    """Bytes both ways on the wire for one forward pass of m positions of `model` on `board`'s
    default array, streaming tiles and from resident weights (the host's own op lists,
    framed as BoardDevice frames them; answer words counted as unescaped)."""
    import numpy as np

    from tritium.boards import protocol as P
    from tritium.boards.resident import ResidentWeights, ResidentWsDriver
    from tritium.host import zoo
    from tritium.host.checkpoint import read_config
    from tritium.host.weights import iter_layers

    spec = BOARDS[board]
    cfg = spec.default_array
    drv = ResidentWsDriver(None, cfg)
    ckpt, mcfg = read_config(zoo.resolve(model) or model)
    shapes = [lin.w.shape for lw in iter_layers(ckpt, mcfg) for lin in lw.linears.values()]
    payload = spec.link.payload_bytes
    totals = {"stream": 0, "resident": 0}
    for k, n in shapes:
        packed = drv.pack(np.zeros((k, n), dtype=np.int8))
        kt = packed.words.shape[0]
        awords = np.zeros((kt, m * drv.map.act_words), dtype=np.uint32)
        for mode, w in (("stream", packed),
                        ("resident", ResidentWeights(k, n, packed.words, 0, base=0))):
            ops, _ = drv._chunk_ops(w, awords, m, 0)
            for a, b in P.split_ops(ops, payload, spec.link.max_reads):
                chunk = P.with_leading_store(ops[a:b])
                req = P.request(P.FrameType.EXEC, 0, P.encode_ops(chunk))
                resp = P.response(P.FrameType.EXEC, 0, 0, [0] * int(P.op_reads(chunk).sum()))
                totals[mode] += len(P.slip_encode(req)) + len(P.slip_encode(resp))
    return totals


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> float:
    return after[key] - before[key]


def bench_resident(board: str, model: str, problems: int, stream_problems: int,
                   digits: int = 3) -> dict[str, Any]:
    """A shipped adder on the Verilated board top of `board`: resident weights (and, for
    comparison, streamed weights on the first `stream_problems`), every answer against golden."""
    from tritium.boards.backend import BoardBackend
    from tritium.boards.board_sim import PtyBoard, SimBoard
    from tritium.host import BitNetModel
    from tritium.train.eval_add import held_out_problems

    spec = BOARDS[board]
    cfg = spec.default_array
    sim = SimBoard.with_store(cfg, board, req_bytes=spec.link.req_bytes,
                              max_reads=spec.link.max_reads)
    golden = BitNetModel.from_pretrained(model, backend="golden", array=cfg)
    cases = held_out_problems(problems, digits=digits)
    entry: dict[str, Any] = {"board": board, "model": model, "config": cfg.to_dict(),
                             "baud": spec.default_baud, "divisor": sim.divisor,
                             "store_words": sim.store_words}
    # What one forward pass puts on the wire either way: prefill of 8 positions, one decode.
    entry["wire_bytes_per_pass"] = {f"m={m}": wire_bytes(board, model, m) for m in (1, 8)}
    print(f"{board}: bytes per forward pass {entry['wire_bytes_per_pass']}", flush=True)
    t0 = time.monotonic()
    with PtyBoard(sim) as pty:
        entry["sim_build_s"] = round(time.monotonic() - t0, 1)
        for mode, n in (("resident", len(cases)), ("stream", stream_problems)):
            if n == 0:
                continue
            be = BoardBackend(port=pty.port, timeout=30.0, resident=mode == "resident")
            with BitNetModel.from_pretrained(model, backend=be) as m:
                stats = be.device.stats
                eos = set(m.config.eos_token_ids)
                # The first matmul loads the store: run one token outside the timed problems.
                m.logits(m.encode("1+1="))
                load = stats.as_dict()
                print(f"{board} {mode}: {load['mode_reason']}; load {load['load_bytes']:,} "
                      f"bytes in {time.monotonic() - t0:.0f} s", flush=True)
                before, busy0 = stats.as_dict(), m.stats.as_dict()["total"]["cycles"]
                cpu0, t1 = m.stats.as_dict()["cpu_seconds"], time.monotonic()
                tokens, right, answers = 0, 0, []
                for a, b in cases[:n]:
                    ids = m.encode(f"{a}+{b}=")
                    budget = max(len(str(a)), len(str(b))) + 2
                    got = m.generate(ids, max_new_tokens=budget)
                    want = golden.generate(ids, max_new_tokens=budget)
                    right += list(got) == list(want)
                    tokens += len(got)
                    stopped = bool(got) and got[-1] in eos
                    answers.append(f"{a}+{b}={m.decode(got[:-1] if stopped else got)}")
                    print(f"  {answers[-1]} ({'equal to' if right == len(answers) else 'NOT'}"
                          f" golden) at {time.monotonic() - t1:.0f} s", flush=True)
                wall = time.monotonic() - t1
                after = stats.as_dict()
                busy = m.stats.as_dict()["total"]["cycles"] - busy0
                cpu = m.stats.as_dict()["cpu_seconds"] - cpu0
                link_s = _delta(after, before, "link_seconds")
                device_s = busy / spec.clock_hz
                entry[mode] = {
                    "problems": n, "equal_to_golden": right, "new_tokens": tokens,
                    "answers": answers[:10],
                    "mode": after["mode"], "mode_reason": after["mode_reason"],
                    "load_bytes": load["load_bytes"],
                    "load_link_seconds": load["load_link_seconds"],
                    "bytes": int(_delta(after, before, "bytes_sent")
                                 + _delta(after, before, "bytes_received")),
                    "frames": int(_delta(after, before, "frames")),
                    "retries": int(_delta(after, before, "retries")),
                    "link_seconds": round(link_s, 3),
                    "sim_device_seconds": round(_delta(after, before, "compute_seconds"), 3),
                    "array_busy_cycles": busy,
                    "array_seconds_at_board_clock": round(device_s, 4),
                    "host_cpu_seconds": round(cpu, 3),
                    "sim_wall_seconds": round(wall, 1),
                    "sim_tokens_per_s": round(tokens / wall, 3),
                    # A real board: the wire at the baud rate, the array at the board clock,
                    # and the host's own work (the simulator's slowness left out).
                    "board_tokens_per_s": round(tokens / (link_s + device_s + cpu), 2),
                }
                print(f"{board} {mode}: {right}/{n} equal to golden, {tokens} tokens, "
                      f"link {link_s:.2f} s, array {device_s:.3f} s, host {cpu:.2f} s, "
                      f"sim wall {wall:.0f} s", flush=True)
    entry["machine"] = f"{platform.machine()} {platform.python_implementation()} " \
                       f"{platform.python_version()}"
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", choices=list(BOARDS), action="append",
                    help="board to build (repeatable; default: every board)")
    ap.add_argument("--resident", choices=list(BOARDS),
                    help="instead of building, run --model on this board's Verilated top")
    ap.add_argument("--model", default="tiny-adder")
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--stream-problems", type=int, default=0)
    ap.add_argument("--digits", type=int, default=3)
    args = ap.parse_args()
    if args.resident:
        results = json.loads(RESIDENT_OUT.read_text()) if RESIDENT_OUT.exists() else {}
        key = f"{args.resident}/{args.model}"
        results[key] = bench_resident(args.resident, args.model, args.problems,
                                      args.stream_problems, args.digits)
        atomic_write_text(RESIDENT_OUT, json.dumps(results, indent=2) + "\n")
        return
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for board in args.board or list(BOARDS):
        results[board] = entry = bench(board)
        atomic_write_text(OUT, json.dumps(results, indent=2) + "\n")
        rep = entry.get("report", {})
        timing = rep.get("timing", {})
        print(f"{board}: built={entry['built']} fmax={timing.get('fmax_mhz')} MHz "
              f"wall={entry['wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
