"""Weights resident on the board: a model's ternary tiles loaded once into the board's weight
store (boards/store.py), then each tile run from there with one OP_RUN_TILE.

The host decides by itself. The model hands every weight to the backend at load time
(Backend.prepare); the first matmul then knows the whole model, and:

- if its tiles fit the store the board reported in IDENT, they are written once (OP_STORE runs,
  5 bytes a word on the wire) and every later tile sends only its activations and a 5-byte
  OP_RUN_TILE instead of rows x weight_words bus writes of 7 bytes;
- otherwise every tile streams its weights as before, and the reason is kept.

Either way the mode and its reason land in the link statistics (LinkStats: `mode`,
`mode_reason`) that `tritium run --backend board` prints, and in a log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..bus.contract import OP_READ, OP_WRITE
from ..bus.ws_regmap import Csr
from ..host.ws_driver import PackedWeights, WsDriver
from . import protocol as P

log = logging.getLogger(__name__)

RESIDENT = "resident"
STREAM = "stream"


@dataclass(frozen=True)
class ResidentWeights(PackedWeights):
    """PackedWeights whose tiles also sit in the board's store: tile (kt, nt) from word
    base + (kt * N tiles + nt) * tile_words on, in the order of words[kt, nt]."""

    base: int = 0


@dataclass
class WeightHandle:
    """What the board backend keeps per weight: its packed tiles, resident or not."""

    name: str
    packed: PackedWeights

    @property
    def store_words(self) -> int:
        return int(self.packed.words.size)


class ResidentWsDriver(WsDriver):
    """WsDriver whose tiles of ResidentWeights run from the board's store."""

    def __init__(self, device, cfg=None) -> None:
        super().__init__(device, cfg)
        self.tile_words = P.tile_words(self.map)

    def _chunk_ops(self, packed, awords, mm, first_tile):
        if not isinstance(packed, ResidentWeights):
            return super()._chunk_ops(packed, awords, mm, first_tile)
        cfg, rm = self.cfg, self.map
        kt, nt, wl = packed.words.shape
        al = awords.shape[1]
        ntiles = kt * nt
        idx = np.arange(ntiles)
        ktile, ntile = idx % kt, idx // kt
        slot = (first_tile + idx) % cfg.weight_tiles
        # Per tile (as plan_gemm orders them, K innermost): its activations, then OP_RUN_TILE
        # (weights from the store into the slot, W_TILE, CTRL start, wait). M_COUNT holds for
        # the whole chunk, so it is written once.
        seg = np.empty((ntiles, al + 1, 3), dtype=np.int64)
        seg[:, :al, 0] = OP_WRITE
        seg[:, :al, 1] = rm.act_addrs(mm)
        seg[:, :al, 2] = awords[ktile]
        seg[:, al, 0] = P.OP_RUN_TILE
        seg[:, al, 1] = packed.base + (ktile * nt + ntile) * wl
        seg[:, al, 2] = slot | np.where(ktile > 0, P.RUN_ACCUMULATE, 0)
        blocks = [np.array([[OP_WRITE, rm.csr(Csr.M_COUNT), mm]], dtype=np.int64)]
        outputs, nread = [], 0
        for j in range(nt):
            n0 = j * cfg.cols
            nn = min(cfg.cols, packed.n - n0)
            reads = np.stack([np.full(mm * nn, OP_READ), rm.out_addrs(mm, nn),
                              np.zeros(mm * nn, dtype=np.int64)], axis=1)
            blocks += [seg[j * kt : (j + 1) * kt].reshape(-1, 3), reads]
            outputs.append((n0, nn, nread))
            nread += mm * nn
        return np.concatenate(blocks), outputs


@dataclass
class ResidentPlan:
    """The backend's choice and why, and what loading the store cost."""

    mode: str = STREAM
    reason: str = "not decided yet (no matmul has run)"
    store_words: int = 0
    weight_words: int = 0       # store words the model's tiles take
    load_bytes: int = 0         # bytes both ways while loading the store
    load_seconds: float = 0.0   # wall time of the load
    load_link_seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float | str]:
        return {"mode": self.mode, "mode_reason": self.reason, "store_words": self.store_words,
                "weight_words": self.weight_words, "load_bytes": self.load_bytes,
                "load_seconds": round(self.load_seconds, 6),
                "load_link_seconds": round(self.load_link_seconds, 6)}


def plan_residency(handles: list[WeightHandle], store_words: int,
                   want: bool | None) -> tuple[str, str, int]:
    """(mode, reason, store words needed) for a model's weights on a store of store_words.
    want: None decides by fit, False always streams, True insists (raising ValueError when
    the weights do not fit)."""
    need = sum(h.store_words for h in handles)
    fits = 0 < need <= store_words
    kb = need * 4 / 1024
    if want is False:
        return STREAM, "streaming asked for (resident=False)", need
    if store_words == 0:
        reason = "the board has no weight store (its bitstream was built without one)"
    elif need == 0:
        reason = "the model has no ternary weights"
    elif not fits:
        reason = (f"the model's ternary tiles take {need:,} store words ({kb:,.0f} KB), "
                  f"the board's weight store holds {store_words:,}")
    else:
        return RESIDENT, (f"the model's ternary tiles take {need:,} of the board's "
                          f"{store_words:,} store words ({kb:,.0f} KB)"), need
    if want:
        raise ValueError(f"resident weights asked for, but {reason}")
    return STREAM, reason + ": every tile streams its weights", need
