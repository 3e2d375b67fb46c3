"""Every call the sweep makes into golden, host and hdl, in one place.

Those packages are being refactored; if one of their names moves, this module is the only one
to change. Everything here returns plain dicts of flat, JSON-ready values.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from pathlib import Path
from typing import Any

from .. import __version__
from ..golden.checks import InputError
from ..golden.config import ArrayConfig, ConfigError
from ..golden.files import build_root

VERSION = __version__
# Errors that mean "this point is not a valid design", as opposed to a tool failing.
INVALID_ERRORS: tuple[type[Exception], ...] = (ConfigError, InputError)


class SweepError(InputError):
    """Bad sweep input (an option, a value, an objective); the message names it."""


# --- the parameters a point may set ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    group: str          # array | estimate | synth
    type: type
    default: Any
    help: str


def _field_type(cls: type, f: dataclasses.Field) -> type:
    default = f.default
    if default is not None and default is not dataclasses.MISSING:
        return type(default)
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _estimate_config_cls() -> type:
    from ..host.estimate import EstimateConfig

    return EstimateConfig


@functools.cache
def params() -> dict[str, Param]:
    """Array fields (read from ArrayConfig, so new fields join automatically), then the
    estimator's options, then synthesis targets."""
    out: dict[str, Param] = {}
    for f in dataclasses.fields(ArrayConfig):
        out[f.name] = Param(f.name, "array", _field_type(ArrayConfig, f), f.default,
                            f"ArrayConfig.{f.name}")
    est = _estimate_config_cls()
    helps = {"dram_gbps": "DRAM bandwidth in GB/s (default: the array's dram_bytes_per_cycle "
                          "at its clock)",
             "prompt_len": "prompt tokens run as one prefill",
             "gen_len": "tokens generated after the prompt",
             "weight_bits": "packed bits per ternary weight in DRAM (2: HF/I2_S, 1.6: base-3 "
                            "or TL2; default: weight_packing's)",
             "zero_fraction": "fraction of zero ternary weights (default: counted from a "
                              "checkpoint's weights, else 1/3)"}
    for f in dataclasses.fields(est):
        # the array is the point itself; the estimate prices the array's own dataflow
        if f.name in ("array", "dataflow") or f.name in out:
            continue
        # a record-valued option (os_port: PortTiming, host: HostParams) is no grid axis
        if not isinstance(f.default, int | float | str | bool | None):
            continue
        out[f.name] = Param(f.name, "estimate", _field_type(est, f), f.default,
                            helps.get(f.name, f"EstimateConfig.{f.name}"))
    out["device"] = Param("device", "synth", str, "ice40-up5k",
                          f"FPGA for synthesis ({', '.join(device_names())}) or a board "
                          f"({', '.join(board_names())})")
    return out


def device_names() -> list[str]:
    from ..hdl.synth import DEVICES

    return list(DEVICES)


def board_names() -> list[str]:
    from ..boards.platforms import BOARDS

    return list(BOARDS)


def device_of(name: str) -> str:
    """An FPGA name for a device or board name."""
    if name in device_names():
        return name
    from ..boards.platforms import BOARDS

    if name in BOARDS:
        return BOARDS[name].device
    raise SweepError(f"device: unknown {name!r}; expected a device ({', '.join(device_names())})"
                     f" or a board ({', '.join(board_names())})")


# --- a point's configuration --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PointConfig:
    """What one point evaluates: the array, the estimator's options, the synthesis target."""

    array: ArrayConfig
    estimate: dict[str, Any]
    synth: dict[str, Any]

    def flat(self) -> dict[str, Any]:
        return {**self.array.to_dict(), **self.estimate, **self.synth}


def point_config(values: dict[str, Any], catalogue: dict[str, Param]) -> PointConfig:
    """Raises ConfigError/InputError naming the parameter when the point is not a design."""
    array = {k: v for k, v in values.items() if catalogue[k].group == "array"}
    est = {k: v for k, v in values.items() if catalogue[k].group == "estimate"}
    synth = {k: v for k, v in values.items() if catalogue[k].group == "synth"}
    if est.get("dram_gbps") is not None:
        # The array's own DRAM width follows the bandwidth, as `tritium estimate` derives it.
        from ..golden.memory import MemoryConfig
        from ..host.estimate import array_bytes_per_cycle

        clock = array.get("clock_mhz", ArrayConfig.clock_mhz)
        mem = MemoryConfig(est["dram_gbps"] * 1e9 / (clock * 1e6),
                           est.get("weight_bits") or 2.0)   # None: the packing's own
        array["dram_bytes_per_cycle"] = array_bytes_per_cycle(mem)
    cfg = ArrayConfig(**array)
    ecfg = _estimate_config_cls()(cfg, dataflow=cfg.dataflow, **est)
    if cfg.dataflow == "os":
        from ..golden.memory import os_bytes_per_cycle

        os_bytes_per_cycle(ecfg.memory)   # the clear error now, not inside a worker
    est = dict(est, dram_gbps=ecfg.gbps)
    if "device" in synth:
        synth["device"] = device_of(synth["device"])
    return PointConfig(cfg, est, synth)


# --- the model -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Model:
    spec: str                 # what the user gave: a name or a folder
    shape: Any                # golden.models.ModelShape
    nnz: list[dict[str, int]] | None
    nnz_source: str | None
    fingerprint: str          # changes when the model's shape or weights change


def load_model(spec: str, count_zeros: bool) -> Model:
    """Resolve a model name or checkpoint folder once, in the driver. count_zeros: measure the
    per-matmul non-zero weights of a folder that has weights (as `tritium estimate` does)."""
    from ..host.estimate import measure_nnz, resolve

    shape, folder = resolve(spec)
    h = hashlib.sha256(json.dumps(shape.to_dict(), sort_keys=True).encode())
    nnz = source = None
    if folder is not None:
        for f in sorted(Path(folder).glob("*.safetensors")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        if count_zeros:
            nnz = measure_nnz(folder, shape)
            source = f"counted from the weights in {folder}"
    return Model(str(spec), shape, nnz, source, h.hexdigest()[:16])


# --- measurements ---------------------------------------------------------------------------------


ESTIMATE_COLUMNS = (
    "decode_tokens_per_s", "prefill_tokens_per_s", "energy_j_per_token", "prefill_j_per_token",
    "decode_w", "roofline_tokens_per_s", "roofline_fraction", "decode_utilization",
    "prefill_utilization", "decode_tokens_per_s_with_lm_head", "end_to_end_s", "end_to_end_j",
    "weight_bytes_per_token",
)


def run_estimate(model: Model, pc: PointConfig) -> dict[str, Any]:
    from ..host.estimate import EstimateConfig, estimate

    opts = {k: v for k, v in pc.estimate.items()}
    ecfg = EstimateConfig(pc.array, dataflow=pc.array.dataflow, **opts)
    nnz = model.nnz if ecfg.zero_fraction is None else None
    r = estimate(model.shape, ecfg, nnz=nnz, nnz_source=model.nnz_source if nnz else None)
    dec, pre, en, tot = r["decode"], r["prefill"], r["energy"], r["totals"]
    return {
        "decode_tokens_per_s": dec["tokens_per_s"],
        "prefill_tokens_per_s": pre["tokens_per_s"],
        "energy_j_per_token": en["decode_j_per_token"],
        "prefill_j_per_token": en["prefill_j_per_token"],
        "decode_w": en["decode_w"],
        "roofline_tokens_per_s": dec["roofline_tokens_per_s"],
        "roofline_fraction": dec["roofline_fraction"],
        "decode_utilization": dec["utilization"],
        "prefill_utilization": pre["utilization"],
        "decode_tokens_per_s_with_lm_head": dec["tokens_per_s_with_lm_head_dram"],
        "end_to_end_s": tot["seconds"],
        "end_to_end_j": tot["energy_j"],
        "weight_bytes_per_token": dec["weight_bytes_per_token"],
    }


SYNTH_MODES = ("full", "fit")
SYNTH_COLUMNS = ("fits", "luts", "ffs", "bram", "dsp", "lut_pct", "fmax_mhz", "timing_met")


def synth_target(pc: PointConfig) -> tuple[str, str]:
    """(device, PE) to synthesise the point's array for."""
    return pc.synth["device"], pc.array.pe


def run_synth(array: dict[str, Any], device: str, pe: str, mode: str,
              build_root: str) -> dict[str, Any]:
    """Yosys' fit check ("fit") or the whole flow with nextpnr ("full"). A design too large for
    the device is a result (fits = False, with Yosys' counts), not an error."""
    from ..hdl import synth

    cfg = ArrayConfig(**array)
    root = Path(build_root)
    est = synth.estimate(cfg, device, pe, build_root=root)
    res = est["resources"]
    out: dict[str, Any] = {
        "fits": not est["overflow"], "luts": res["lut"]["synth"], "ffs": res["ff"]["synth"],
        "bram": res["bram"]["synth"], "dsp": res["dsp"]["synth"],
        "lut_pct": res["lut"]["utilization_pct"], "fmax_mhz": None, "timing_met": None,
    }
    if mode == "fit" or est["overflow"]:
        return out
    rep = synth.synth_report(cfg, device, pe, build_root=root)
    out.update({"luts": rep["luts"], "ffs": rep["ffs"], "bram": rep["bram"], "dsp": rep["dsp"],
                "lut_pct": rep["resources"]["lut"]["utilization_pct"],
                "fmax_mhz": rep["fmax_mhz"], "timing_met": rep["timing_met"]})
    return out


def default_build_root() -> str:
    return str(build_root())

