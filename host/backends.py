"""Backends: what runs each BitLinear's int8 x ternary matmul.

The model hands every weight to `prepare` once at load time and then calls `matmul` with int8
activations; it never knows which backend it talks to. Both return bit-identical int32 results.

- "golden": NumPy, exact. Events (tiles, cycles, MACs, zero skips) come from the cycle model
  of the configured array, so the statistics equal what the RTL would count.

Transports register their own backends, so this module imports neither tritium.sim nor
tritium.boards: each declares an entry point in the group "tritium.backends" (pyproject.toml:
"rtl", the Verilator-compiled accelerator in tritium.sim.backend; "board", an FPGA board over
its serial link in tritium.boards.backend), loaded by name the first time it is asked for.
`register_backend` adds one at run time. Backends on a Device run its dataflow's host driver
(DeviceBackend); events are read from the RTL's own performance counters.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np

from ..golden.checks import InputError, check_int_range, check_ternary
from ..golden.config import DATAFLOWS, ArrayConfig, safe_k
from ..golden.cycles import Events, gemm_events_from_nnz
from ..golden.gemm import array_gemm
from ..golden.memory import best_dataflow
from .driver import driver_for
from .ops import parallel, split, threads

ENTRY_POINT_GROUP = "tritium.backends"

# The array both backends model unless told otherwise: small enough to simulate quickly,
# 32-bit accumulators, and max_k (8192) above the largest K of bitnet-b1.58-2B-4T (6912).
DEFAULT_ARRAY = ArrayConfig(rows=4, cols=4)

# float32 sums of integers are exact while every partial sum is below 2**24.
_F32_EXACT = 2**24
# Up to this many activation rows, the int32 einsum over the int8 weight beats widening the
# weight to float32 for BLAS (measured on 2B-4T shapes: a decode GEMV is about 3x faster).
EINSUM_MAX_M = 4


@dataclass
class Prepared:
    """A weight as a backend holds it: int8 ternary w [K, N] and its non-zero count."""

    name: str
    w: np.ndarray
    nnz: int
    device_handle: Any = None   # whatever the device needs (e.g. pre-packed bus words)

    @property
    def k(self) -> int:
        return int(self.w.shape[0])

    @property
    def n(self) -> int:
        return int(self.w.shape[1])


def _check_weight(name: str, w: np.ndarray) -> np.ndarray:
    if isinstance(w, np.ndarray) and w.dtype == np.int8 and w.ndim == 2:
        # fast path for the loader's int8 arrays: two reductions, no temporaries
        if w.size and (int(w.min()) < -1 or int(w.max()) > 1):
            return check_ternary(name, w)  # raises, naming the first bad value
        return np.ascontiguousarray(w)
    return np.ascontiguousarray(check_ternary(name, w))


def _check_acts(a: np.ndarray, p: Prepared) -> np.ndarray:
    if not (isinstance(a, np.ndarray) and a.dtype == np.int8 and a.ndim == 2):
        a = check_int_range(f"activations for {p.name}", a, 8).astype(np.int8)
    if a.shape[1] != p.k:
        raise InputError(f"shape mismatch: activations are {a.shape} (M x K) but weight "
                         f"{p.name} is {p.w.shape} (K x N); K must agree")
    if a.shape[0] < 1:
        raise InputError(f"activations for {p.name} have no rows (M = 0)")
    return a


def exact_matmul(a: np.ndarray, w: np.ndarray, scratch: list[np.ndarray] | None = None
                 ) -> np.ndarray:
    """int32 [M, N] = int8 a [M, K] @ int8 ternary w [K, N], bit-exact (= golden ternary_gemm).

    Few rows: NumPy's int32 einsum streams the int8 weight once (decode is a GEMV and is bound
    by reading the weight). Many rows: widen the weight to float32 in a reused buffer and use
    BLAS, exact while K * 128 < 2**24 (float64 beyond). `scratch` is a one-element list holding
    that buffer between calls.
    """
    m, k = a.shape
    n = w.shape[1]
    if m <= EINSUM_MAX_M:
        # K split over the cores (einsum releases the GIL while it sums): row blocks of w are
        # contiguous, where column blocks would send einsum down a path 4x slower
        parts = split(k, threads() if k * n >= 1 << 20 else 1)
        partial: list[np.ndarray] = [np.empty(0, np.int32)] * len(parts)

        def run(i: int, k0: int, k1: int) -> None:
            partial[i] = np.einsum("mk,kn->mn", a[:, k0:k1], w[k0:k1], dtype=np.int32)

        parallel([lambda i=i, k0=k0, k1=k1: run(i, k0, k1)
                  for i, (k0, k1) in enumerate(parts)])
        out = partial[0]
        for p in partial[1:]:
            out += p
        return out
    dtype = np.float32 if k * 128 < _F32_EXACT else np.float64
    size = k * n
    buf = scratch[0] if scratch else None
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(size, dtype)
        if scratch is not None:
            scratch[:] = [buf]
    wf = buf[:size].reshape(k, n)
    np.copyto(wf, w, casting="unsafe")
    return np.matmul(a.astype(dtype), wf).astype(np.int32)


def check_array(array: ArrayConfig) -> None:
    """Every ArrayConfig runs the model: BitNetModel quantises activations to act_bits (8 is
    BitNet b1.58's int8; fewer bits is the accuracy study of `tritium eval`), and the codes
    travel in int8 lanes."""
    if not isinstance(array, ArrayConfig):
        raise InputError(f"array must be an ArrayConfig, got {type(array).__name__}")


class Backend(ABC):
    """One accelerator (or its model) that runs int8 x ternary matmuls for the host runtime."""

    name: ClassVar[str] = "?"

    def __init__(self, array: ArrayConfig) -> None:
        check_array(array)
        self.array = array
        self.seconds = 0.0     # wall time spent in matmul
        self.calls = 0

    def prepare(self, w: np.ndarray, name: str = "weight") -> Prepared:
        """Take ternary w [K, N] (int8) once, at load time; returns the handle matmul takes."""
        w = _check_weight(name, w)
        k = w.shape[0]
        if k > self.array.max_k:
            raise InputError(
                f"{name} has K={k} but ArrayConfig.max_k={self.array.max_k}: the array cannot "
                f"accumulate that long a sum; raise max_k (acc_bits={self.array.acc_bits} "
                f"allows up to {safe_k(self.array.act_bits, self.array.acc_bits)})")
        p = Prepared(name, w, int(np.count_nonzero(w)))
        p.device_handle = self._prepare_device(p)
        return p

    def _prepare_device(self, p: Prepared) -> Any:
        return None

    def matmul(self, a: np.ndarray, p: Prepared) -> tuple[np.ndarray, Events | None]:
        """int32 [M, N] = a [M, K] (int8) @ w, and the array events it took (None if unknown)."""
        a = _check_acts(a, p)
        t0 = time.perf_counter()
        out, events = self._matmul(a, p)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out, events

    @abstractmethod
    def _matmul(self, a: np.ndarray, p: Prepared) -> tuple[np.ndarray, Events | None]: ...

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release the device; idempotent."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GoldenBackend(Backend):
    """NumPy integer GEMM; cycle and event counts from the array's cycle model."""

    name = "golden"

    def __init__(self, array: ArrayConfig) -> None:
        super().__init__(array)
        self._scratch: list[np.ndarray] = []

    def _matmul(self, a: np.ndarray, p: Prepared) -> tuple[np.ndarray, Events]:
        if self._overflows(p.k):
            # a narrow accumulator: what the RTL holds, wrapped or saturated where it adds
            out = array_gemm(self.array, a, p.w, check=False).astype(np.int32)
        else:
            out = exact_matmul(a, p.w, self._scratch)
        return out, gemm_events_from_nnz(self.array, a.shape[0], p.k, p.n, p.nnz)

    def _overflows(self, k: int) -> bool:
        return k > safe_k(self.array.act_bits, self.array.acc_bits)

    def close(self) -> None:
        self._scratch.clear()


class DeviceBackend(Backend):
    """A backend whose matmuls run on a Device (bus/contract.py) through the host driver of the
    device's dataflow (host/driver.driver_for); every weight is packed into bus words once, at
    prepare time, and the events come from the device's own performance counters."""

    def __init__(self, device: Any) -> None:
        self.device = device
        try:
            super().__init__(device.cfg)
            self.accel = driver_for(device, device.cfg)
            self.accel.identify()
        except BaseException:
            device.close()
            raise

    def _prepare_device(self, p: Prepared) -> Any:
        return self.accel.pack(p.w)

    def _matmul(self, a: np.ndarray, p: Prepared) -> tuple[np.ndarray, Events]:
        return self.accel.gemm(a, p.device_handle)

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None


class AutoBackend(Backend):
    """One backend per dataflow; each matmul runs on the one golden's cost model says is
    faster (golden.memory.best_dataflow: weight-stationary for prefill, weight streaming for
    decode GEMVs, typically). Weights are prepared for both at load time."""

    def __init__(self, make: Callable[[ArrayConfig], Backend], array: ArrayConfig) -> None:
        super().__init__(array)
        self.inner: dict[str, Backend] = {}
        try:
            for df in DATAFLOWS:
                self.inner[df] = make(dataclasses.replace(array, dataflow=df))
        except BaseException:
            self.close()
            raise
        self.name = self.inner["ws"].name
        self.dataflow_calls = dict.fromkeys(DATAFLOWS, 0)
        self.dataflow_cycles = dict.fromkeys(DATAFLOWS, 0)
        self._choice: dict[tuple[int, int, int, int], str] = {}

    def _prepare_device(self, p: Prepared) -> Any:
        return {df: b._prepare_device(p) for df, b in self.inner.items()}

    def _matmul(self, a: np.ndarray, p: Prepared) -> tuple[np.ndarray, Events | None]:
        key = (a.shape[0], p.k, p.n, p.nnz)
        df = self._choice.get(key)
        if df is None:
            df = self._choice[key] = best_dataflow(self.array, *key)
        self.dataflow_calls[df] += 1
        out, events = self.inner[df]._matmul(
            a, dataclasses.replace(p, device_handle=p.device_handle[df]))
        if events is not None:
            self.dataflow_cycles[df] += events.cycles
        return out, events

    def close(self) -> None:
        for b in self.inner.values():
            b.close()


BackendFactory = Callable[..., Backend]
_REGISTRY: dict[str, BackendFactory] = {"golden": GoldenBackend}


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make `name` available to make_backend, BitNetModel.from_pretrained and `tritium run`."""
    _REGISTRY[name] = factory


def backend_names() -> list[str]:
    """golden first, then every other backend by name, whether or not it is loaded yet (the
    order must not depend on which backends this process happened to use)."""
    return ["golden", *sorted((set(_REGISTRY) | set(_entry_points())) - {"golden"})]


def _factory(name: str) -> BackendFactory:
    """The factory registered as name, loading its entry point the first time."""
    if name not in _REGISTRY:
        ep = _entry_points().get(name)
        if ep is None:
            raise InputError(f"unknown backend {name!r}; known backends: "
                             f"{', '.join(backend_names())}")
        try:
            _REGISTRY[name] = ep.load()
        except ImportError as exc:
            raise InputError(f"backend {name!r} ({ep.value}) cannot be loaded: {exc}") from None
    return _REGISTRY[name]


def make_backend(name: str, array: ArrayConfig | None = None, **opts: Any) -> Backend:
    """A backend by name, for `array` (default DEFAULT_ARRAY: 4x4, 32-bit accumulators)."""
    factory = _factory(name)
    if array is not None and not isinstance(array, ArrayConfig):
        raise InputError(f"array must be an ArrayConfig, got {type(array).__name__}")
    dataflow = opts.pop("dataflow", None)
    if dataflow not in (None, "auto"):
        raise InputError(f"backend option dataflow must be 'auto' (or set "
                         f"ArrayConfig.dataflow), got {dataflow!r}")
    try:
        inspect.signature(factory).bind(array or DEFAULT_ARRAY, **opts)
    except TypeError:
        params = [p for p in inspect.signature(factory).parameters if p != "array"]
        takes = ", ".join(params) if params else "no options"
        raise InputError(f"backend {name!r} does not take option(s) "
                         f"{', '.join(sorted(opts))}; it takes {takes}") from None
    if dataflow == "auto":
        return AutoBackend(lambda cfg: factory(cfg, **opts), array or DEFAULT_ARRAY)
    return factory(array or DEFAULT_ARRAY, **opts)
