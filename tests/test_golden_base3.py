"""Base-3 packing: every byte value, round trips, converters, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tritium.golden import InputError
from tritium.golden.base3 import (
    decode_byte_adder_only,
    hf_to_base3,
    i2s_to_base3,
    pack_base3,
    packed_bytes,
    unpack_base3,
)
from tritium.golden.packing import pack_hf, pack_i2s


def test_all_243_digit_groups_decode_by_shift_and_add() -> None:
    seen = set()
    for digits in itertools.product(range(3), repeat=5):
        w = np.array(digits) - 1
        (q,) = pack_base3(w)
        seen.add(int(q))
        # the hardware recurrence and the plain base-3 reading agree
        assert decode_byte_adder_only(int(q)) == digits
        assert int(q) == -(-sum(d * 3 ** (4 - i) for i, d in enumerate(digits)) * 256 // 243)
    assert len(seen) == 243


@pytest.mark.parametrize("shape", [(1,), (5,), (7,), (3, 11), (64, 129), (2, 3, 4)])
def test_round_trip(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    w = rng.integers(-1, 2, size=shape).astype(np.int8)
    packed = pack_base3(w)
    assert packed.dtype == np.uint8 and packed.size == packed_bytes(w.size) == -(-w.size // 5)
    np.testing.assert_array_equal(unpack_base3(packed, shape), w)


def test_padding_is_weight_zero() -> None:
    # 1 weight of +1 padded with four zeros: digits 2,1,1,1,1 -> v = 2*81 + 27 + 9 + 3 + 1
    (q,) = pack_base3(np.array([1]))
    assert decode_byte_adder_only(int(q)) == (2, 1, 1, 1, 1)


def test_converters_match_direct_packing() -> None:
    rng = np.random.default_rng(3)
    w = rng.integers(-1, 2, size=(10, 256)).astype(np.int8)
    np.testing.assert_array_equal(hf_to_base3(pack_hf(w), 10), pack_base3(w))
    b3, scale = i2s_to_base3(pack_i2s(w, 0.25), (10, 256))
    np.testing.assert_array_equal(b3, pack_base3(w))
    assert scale == 0.25


def test_density() -> None:
    w = np.zeros((2560, 2560), dtype=np.int8)
    assert pack_base3(w).nbytes * 8 / w.size == pytest.approx(1.6)


def test_bad_input() -> None:
    with pytest.raises(InputError, match="must be ternary"):
        pack_base3(np.array([0, 2, 1]), name="q_proj")
    with pytest.raises(InputError, match="need 2"):
        unpack_base3(np.zeros(3, dtype=np.uint8), 7)
    unused = sorted(set(range(256)) - {int(pack_base3(np.array(d) - 1)[0])
                                         for d in itertools.product(range(3), repeat=5)})
    assert len(unused) == 13
    with pytest.raises(InputError, match="byte 1 .* not a base-3 code"):
        unpack_base3(np.array([0, unused[0]], dtype=np.uint8), 10)
    with pytest.raises(InputError, match="non-zero padding"):
        unpack_base3(pack_base3(np.ones(5, dtype=np.int8)), 4)
    with pytest.raises(InputError, match="1-D uint8"):
        unpack_base3(np.zeros((2, 2), dtype=np.uint8), 4)
