"""What the PE and array benches share: the configuration and its PE, which may be a plug-in
registered by a module the simulator's own Python has to import first (tritium.sim.runner
names it in the environment)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import numpy as np

from ..golden.config import ArrayConfig
from ..hdl.pes import PESpec, config_pe
from .benchutil import bench_config, bench_rng, start
from .runner import PE_FILE_ENV, PE_MODULE_ENV


def bench_pe(cfg: ArrayConfig) -> PESpec:
    """cfg's PE, importing the module run_bench named first: by name, or from its file when the
    name is not importable here (pytest's importlib mode)."""
    name = os.environ.get(PE_MODULE_ENV)
    if name and name not in sys.modules:
        try:
            importlib.import_module(name)
        except ImportError:
            path = os.environ.get(PE_FILE_ENV)
            if not path:
                raise
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    return config_pe(cfg)


async def start_pe_bench(dut) -> tuple[ArrayConfig, PESpec, np.random.Generator]:
    """The configuration, its PE and the bench's RNG, with the clock running out of reset."""
    cfg = bench_config()
    spec = bench_pe(cfg)
    rng = bench_rng()
    await start(dut)
    return cfg, spec, rng
