"""Weights resident on the board: a model's ternary tiles loaded once into the board's weight
store (boards/store.py), then each tile run from there with one OP_RUN_TILE.

The host decides by itself. The model hands every weight to the backend at load time
(Backend.prepare); the first matmul then knows the whole model, and:

- if its tiles (and a scratch area for one chunk's activations) fit the store the board
  reported in IDENT, they are written once (OP_STORE runs, 5 bytes a word on the wire); from
  then on a matmul writes its activations into the scratch area once, every tile is two 5-byte
  ops (OP_LOAD_ACTS, OP_RUN_TILE) instead of rows x weight_words + act_words bus writes of 7
  bytes each, and each output row comes back with one OP_READ_BLOCK;
- otherwise every tile streams its weights as before, and the reason is kept.

Either way the mode and its reason land in the link statistics (LinkStats: `mode`,
`mode_reason`) that `tritium run --backend board` prints, and in a log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..bus.contract import OP_WRITE
from ..bus.ws_regmap import Csr
from ..host.ws_driver import PackedWeights, WsDriver
from . import protocol as P
from .host import store_ops

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
    """WsDriver whose tiles of ResidentWeights run from the board's store.

    Per M chunk it writes the chunk's activations, K tile by K tile, into a scratch area of the
    store (`scratch`, at least scratch_words() words), then per tile sends OP_LOAD_ACTS and
    OP_RUN_TILE (5 bytes each), and reads each output row with one OP_READ_BLOCK."""

    def __init__(self, device, cfg=None) -> None:
        super().__init__(device, cfg)
        self.tile_words = P.tile_words(self.map)
        self.scratch = 0

    def scratch_words(self, k_tiles: int) -> int:
        """Store words the activations of a chunk of a matmul with k_tiles K tiles take."""
        return k_tiles * self.cfg.act_depth * self.map.act_words

    def _chunk_ops(self, packed, awords, mm, first_tile):
        if not isinstance(packed, ResidentWeights):
            return super()._chunk_ops(packed, awords, mm, first_tile)
        cfg, rm = self.cfg, self.map
        kt, nt, wl = packed.words.shape
        al = awords.shape[1]        # mm rows x act_words, as act_addrs(mm) orders them
        ntiles = kt * nt
        idx = np.arange(ntiles)
        ktile, ntile = idx % kt, idx // kt
        slot = (first_tile + idx) % cfg.weight_tiles
        # Per tile (as plan_gemm orders them, K innermost): its activations from the scratch
        # area, then the tile (weights into the slot, W_TILE, CTRL start, wait). M_COUNT holds
        # for the whole chunk, so it is written once.
        seg = np.empty((ntiles, 2, 3), dtype=np.int64)
        seg[:, 0] = np.stack([np.full(ntiles, P.OP_LOAD_ACTS), self.scratch + ktile * al,
                              np.full(ntiles, mm)], axis=1)
        seg[:, 1] = np.stack([np.full(ntiles, P.OP_RUN_TILE),
                              packed.base + (ktile * nt + ntile) * wl,
                              slot | np.where(ktile > 0, P.RUN_ACCUMULATE, 0)], axis=1)
        blocks = [np.array([[OP_WRITE, rm.csr(Csr.M_COUNT), mm]], dtype=np.int64),
                  store_ops(self.scratch, awords.ravel())]
        outputs, nread = [], 0
        rows = np.array([rm.out_addr(m, 0) for m in range(mm)], dtype=np.int64)
        for j in range(nt):
            n0 = j * cfg.cols
            nn = min(cfg.cols, packed.n - n0)
            reads = np.stack([np.full(mm, P.OP_READ_BLOCK), rows, np.full(mm, nn)], axis=1)
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


def plan_residency(handles: list[WeightHandle], store_words: int, want: bool | None,
                   scratch_words: int = 0) -> tuple[str, str, int]:
    """(mode, reason, store words needed) for a model's weights on a store of store_words,
    next to scratch_words of activation scratch. want: None decides by fit, False always
    streams, True insists (raising ValueError when the weights do not fit)."""
    need = sum(h.store_words for h in handles) + (scratch_words if handles else 0)
    fits = 0 < need <= store_words
    kb = need * 4 / 1024
    if want is False:
        return STREAM, "streaming asked for (resident=False)", need
    if store_words == 0:
        reason = "the board has no weight store (its bitstream was built without one)"
    elif need == 0:
        reason = "the model has no ternary weights"
    elif not fits:
        reason = (f"the model's ternary tiles and activation scratch take {need:,} store "
                  f"words ({kb:,.0f} KB), the board's weight store holds {store_words:,}")
    else:
        return RESIDENT, (f"the model's ternary tiles and activation scratch take {need:,} of "
                          f"the board's {store_words:,} store words ({kb:,.0f} KB)"), need
    if want:
        raise ValueError(f"resident weights asked for, but {reason}")
    return STREAM, reason + ": every tile streams its weights", need


def plan_for_board(model: str, board: str, cfg=None) -> tuple[str, str, int]:
    """What the host would choose for shipped model or checkpoint folder `model` on `board`
    built with `cfg` (default: its default array) and the store its budget gives, without a
    board: (mode, reason, store words needed)."""
    from ..host import zoo
    from ..host.checkpoint import read_config
    from ..host.weights import iter_layers
    from .platforms import get_board

    spec = get_board(board)
    cfg = cfg or spec.default_array
    drv = ResidentWsDriver(None, cfg)
    ckpt, mcfg = read_config(zoo.resolve(model) or model)
    try:
        handles = [WeightHandle(name, drv.pack(lin.w)) for lw in iter_layers(ckpt, mcfg)
                   for name, lin in lw.linears.items()]
    finally:
        ckpt.close()
    k_tiles = max((h.packed.words.shape[0] for h in handles), default=0)
    return plan_residency(handles, spec.link_for(cfg).store_words, None,
                          drv.scratch_words(k_tiles))
