"""Each board's default bitstream, built from a clean folder as `tritium build --board B` builds
it: utilisation, Fmax against the board clock, wall time and tool versions.

  nice -n 15 python benchmarks/bench_boards.py                  # every board (ULX3S: ~30 min)
  nice -n 15 python benchmarks/bench_boards.py --board icebreaker

Results: benchmarks/board_results.json (one entry per board, rewritten after each build).
Builds run one at a time: nextpnr in WebAssembly is single-threaded and slow.
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
from tritium.hdl.fpga import DesignTooLarge, FpgaError, write_atomic

OUT = Path(__file__).with_name("board_results.json")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", choices=list(BOARDS), action="append",
                    help="board to build (repeatable; default: every board)")
    args = ap.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for board in args.board or list(BOARDS):
        results[board] = entry = bench(board)
        write_atomic(OUT, json.dumps(results, indent=2) + "\n")
        rep = entry.get("report", {})
        timing = rep.get("timing", {})
        print(f"{board}: built={entry['built']} fmax={timing.get('fmax_mhz')} MHz "
              f"wall={entry['wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
