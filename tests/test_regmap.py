from __future__ import annotations

import numpy as np
import pytest

from tritium.bus.ws_regmap import CODES_PER_WORD, Csr, Region, WsRegMap
from tritium.golden import ArrayConfig


@pytest.mark.parametrize("cfg", [ArrayConfig(rows=1, cols=1, act_depth=1, weight_tiles=1),
                                 ArrayConfig(rows=5, cols=17, act_depth=9, weight_tiles=3),
                                 ArrayConfig(rows=32, cols=32, act_depth=64)])
def test_addresses_are_unique_and_fit(cfg: ArrayConfig) -> None:
    rm = WsRegMap(cfg)
    addrs = [rm.csr(r) for r in Csr]
    addrs += [rm.weight_addr(t, r, j) for t in range(cfg.weight_tiles)
              for r in range(cfg.rows) for j in range(rm.weight_words)]
    addrs += [rm.act_addr(m, j) for m in range(cfg.act_depth) for j in range(rm.act_words)]
    addrs += [rm.out_addr(m, c) for m in range(cfg.act_depth) for c in range(cfg.cols)]
    assert len(set(addrs)) == len(addrs)
    assert max(addrs) < 2**rm.addr_bits
    assert all(a >> rm.region_bits == Region.CSR for a in addrs[: len(Csr)])


def test_weight_packing_puts_codes_where_the_pe_reads_them() -> None:
    cfg = ArrayConfig(rows=2, cols=20)
    rm = WsRegMap(cfg)
    codes = np.random.default_rng(0).integers(-1, 2, (2, 20))
    writes = dict(rm.pack_weight_tile(codes, tile=1).tolist())
    for r in range(2):
        for c in range(20):
            word = writes[rm.weight_addr(1, r, c // CODES_PER_WORD)]
            bits = word >> (2 * (c % CODES_PER_WORD)) & 3
            # PE decoding: bit 0 non-zero, bit 1 negate.
            value = 0 if not bits & 1 else (-1 if bits & 2 else 1)
            assert value == codes[r, c]


def test_act_packing_is_two_complement_lanes() -> None:
    cfg = ArrayConfig(rows=6, cols=1)
    rm = WsRegMap(cfg)
    acts = np.array([[-128, 127, -1, 0, 5, -7]])
    writes = dict(rm.pack_act_tile(acts).tolist())
    lanes = []
    for j in range(rm.act_words):
        word = writes[rm.act_addr(0, j)]
        lanes += [WsRegMap.to_signed(word >> (8 * i) & 0xFF, 8) for i in range(4)]
    assert lanes[:6] == acts[0].tolist()


def test_config_words_encode_the_config() -> None:
    cfg = ArrayConfig(rows=7, cols=9, acc_bits=20, act_depth=300, weight_tiles=5, max_k=4095)
    c0, c1 = WsRegMap(cfg).config_words()
    assert (c0 & 0xFF, c0 >> 8 & 0xFF, c0 >> 16 & 0xFF, c0 >> 24) == (7, 9, 8, 20)
    assert (c1 & 0xFFFF, c1 >> 16) == (300, 5)
