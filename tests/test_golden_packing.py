"""golden.packing: the HF layout against transformers' `pack_weights` / `unpack_weights`, and
bitnet.cpp's I2_S against a literal per-weight transcription of its `quantize_i2_s` loop."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
import torch
from transformers.integrations import bitnet

from tritium.golden import InputError
from tritium.golden.packing import pack_hf, pack_i2s, unpack_hf, unpack_i2s


@pytest.fixture
def eager():
    """`unpack_weights` is @torch.compile'd; run its source eagerly."""
    import torch._dynamo

    with torch._dynamo.config.patch(disable=True):
        yield


def ternary(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.integers(-1, 2, shape).astype(np.int8)


# out not a multiple of 4 (including ones where transformers packs fewer than 4 blocks), odd in
HF_SHAPES = [(1, 1), (2, 3), (3, 5), (4, 7), (5, 2), (6, 9), (7, 4), (9, 11), (13, 3), (64, 33)]


# ---------------------------------------------------------------------------------------------
# HF packed layout


@pytest.mark.parametrize("shape", HF_SHAPES)
def test_pack_hf_equals_transformers_pack_weights(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    w = ternary(rng, shape)
    ref = bitnet.pack_weights(torch.from_numpy(w.copy()))  # it adds 1 in place: give it a copy
    got = pack_hf(w)
    assert got.dtype == np.uint8
    assert got.shape == (-(-shape[0] // 4), shape[1])
    assert np.array_equal(got, ref.numpy())


@pytest.mark.parametrize("shape", HF_SHAPES)
def test_unpack_hf_equals_transformers_unpack_weights(eager, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    # arbitrary bytes without code 3, padding slots included: every valid byte must agree
    codes = rng.integers(0, 3, (4, -(-shape[0] // 4), shape[1]))
    packed = (codes[0] | codes[1] << 2 | codes[2] << 4 | codes[3] << 6).astype(np.uint8)
    ref = bitnet.unpack_weights(torch.from_numpy(packed), dtype=torch.int8).numpy()
    got = unpack_hf(packed)
    assert got.dtype == np.int8
    assert np.array_equal(got, ref)
    assert np.array_equal(unpack_hf(packed, shape[0]), ref[: shape[0]])


@pytest.mark.parametrize("shape", HF_SHAPES)
def test_hf_round_trip(eager, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] + 1000 * shape[1])
    w = ternary(rng, shape)
    packed = pack_hf(w)
    assert np.array_equal(unpack_hf(packed, shape[0]), w)
    # transformers' own unpacker reads our bytes back too (its extra padding rows unpack to -1)
    ref = bitnet.unpack_weights(torch.from_numpy(packed), dtype=torch.int8).numpy()
    assert np.array_equal(ref[: shape[0]], w)
    assert np.all(ref[shape[0] :] == -1)


def test_hf_layout_is_four_contiguous_blocks() -> None:
    """DESIGN.md: bits [2i+1:2i] of packed row p hold output row i*P + p."""
    w = np.zeros((8, 1), dtype=np.int8)  # P = 2
    w[5, 0] = 1  # i = 2, p = 1 -> code 2 at bits [5:4] of packed row 1
    w[2, 0] = -1  # i = 1, p = 0 -> code 0 at bits [3:2] of packed row 0
    packed = pack_hf(w)
    assert packed[0, 0] == 0b01_01_00_01
    assert packed[1, 0] == 0b01_10_01_01


def test_unpack_hf_is_fast() -> None:
    rng = np.random.default_rng(0)
    w = ternary(rng, (6912, 2560))  # BitNet 2B-4T MLP projection
    packed = pack_hf(w)
    start = time.perf_counter()
    got = unpack_hf(packed, 6912)
    elapsed = time.perf_counter() - start
    assert np.array_equal(got, w)
    assert elapsed < 1.0, f"unpack_hf of 6912x2560 took {elapsed:.2f} s"


def test_unpack_hf_reports_code_3_location() -> None:
    rng = np.random.default_rng(4)
    packed = pack_hf(ternary(rng, (12, 6)))  # P = 3
    packed[1, 2] |= 0b11 << 4  # slot 2 of packed row 1 -> weight row 2*3 + 1 = 7, col 2
    packed[2, 5] |= 0b11 << 6  # a later one (row 11) must not be the one reported
    with pytest.raises(InputError, match=r"o_proj\.weight.*code 3.*row 7, col 2") as info:
        unpack_hf(packed, name="o_proj.weight")
    assert "[1, 2] bits [5:4]" in str(info.value)


def test_unpack_hf_ignores_padding_slots() -> None:
    packed = np.full((2, 3), 0b01_01_01_01, dtype=np.uint8)
    packed[1, :] = 0b11_01_01_01  # slot 3 of row 1 is output row 7, beyond out_features=7
    assert np.array_equal(unpack_hf(packed, 7), np.zeros((7, 3), dtype=np.int8))
    with pytest.raises(InputError, match="row 7"):
        unpack_hf(packed, 8)


@pytest.mark.parametrize(
    ("packed", "out", "fragment"),
    [
        (np.zeros((2, 3), dtype=np.int8), None, "uint8"),
        (np.zeros((2, 3), dtype=np.uint16), None, "uint8"),
        ([[0, 1]], None, "numpy uint8"),
        (np.zeros(6, dtype=np.uint8), None, "2-D"),
        (np.zeros((2, 3, 1), dtype=np.uint8), None, "2-D"),
        (np.zeros((0, 3), dtype=np.uint8), None, "2-D"),
        (np.zeros((2, 3), dtype=np.uint8), 4, "out_features=4"),
        (np.zeros((2, 3), dtype=np.uint8), 9, "out_features=9"),
        (np.zeros((2, 3), dtype=np.uint8), 7.0, "out_features"),
    ],
)
def test_bad_packed_hf_raises(packed, out, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as info:
        unpack_hf(packed, out, name="gate_proj.weight")
    assert "gate_proj.weight" in str(info.value)


@pytest.mark.parametrize(
    ("w", "fragment"),
    [
        (np.array([[0, 2]]), "ternary"),
        (np.array([[0.5, 1.0]]), "integers"),
        (np.array([1, 0, -1]), "2-D"),
        (np.zeros((0, 4), dtype=np.int8), "non-empty"),
    ],
)
def test_bad_weights_for_packing_raise(w: np.ndarray, fragment: str) -> None:
    for pack in (pack_hf, lambda w, name: pack_i2s(w, 1.0, name=name)):
        with pytest.raises(InputError, match=fragment) as info:
            pack(w, name="up_proj.weight")
        assert "up_proj.weight" in str(info.value)


# ---------------------------------------------------------------------------------------------
# bitnet.cpp I2_S


def i2s_reference(w: np.ndarray, scale: float) -> bytes:
    """Per weight, as the x86 `quantize_i2_s` loop: flat block b (128 weights) fills bytes
    32b..32b+31; its weight j goes to byte j % 32, shifted left by 6 - 2 * (j // 32)."""
    flat = [int(v) + 1 for v in w.reshape(-1)]
    out = bytearray(len(flat) // 4)
    for idx, code in enumerate(flat):
        block, j = divmod(idx, 128)
        out[block * 32 + j % 32] |= code << (6 - 2 * (j // 32))
    return bytes(out) + struct.pack("<f", scale) + bytes(28)


# I2_S needs out * in % 128 == 0, so "out not a multiple of 4" and "odd in" come separately
I2S_SHAPES = [(1, 128), (2, 64), (6, 64), (5, 128), (3, 256), (128, 1), (128, 7), (256, 9)]


@pytest.mark.parametrize("shape", I2S_SHAPES)
def test_i2s_matches_reference_loop_and_round_trips(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 10 + shape[1])
    w = ternary(rng, shape)
    scale = float(np.float32(rng.random() * 0.1))
    data = pack_i2s(w, scale)
    assert isinstance(data, bytes)
    assert len(data) == w.size // 4 + 32  # ggml_nbytes for I2_S
    assert data == i2s_reference(w, scale)
    got, got_scale = unpack_i2s(data, shape)
    assert got.dtype == np.int8 and np.array_equal(got, w)
    assert got_scale == scale


def test_i2s_block_layout_by_hand() -> None:
    w = np.zeros((1, 256), dtype=np.int8)  # two blocks, all codes 1 (0b01) by default
    w[0, 0], w[0, 32], w[0, 64], w[0, 96] = 1, -1, 0, 1  # byte 0: 10 00 01 10
    w[0, 128 + 31 + 96] = -1  # block 1, group 3, position 31: byte 32 + 31, bits [1:0] = 00
    data = pack_i2s(w, 0.25)
    assert data[0] == 0b10_00_01_10
    assert data[1:32] == bytes([0b01_01_01_01]) * 31
    assert data[63] == 0b01_01_01_00
    assert data[64:68] == struct.pack("<f", 0.25)
    assert data[68:] == bytes(28)


def test_unpack_i2s_accepts_a_bare_scale_trailer_and_buffers() -> None:
    rng = np.random.default_rng(8)
    w = ternary(rng, (4, 96))
    data = pack_i2s(w, 0.5)
    short = data[: w.size // 4 + 4]
    for blob in (short, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        got, scale = unpack_i2s(blob, (4, 96))
        assert np.array_equal(got, w) and scale == 0.5


def test_i2s_scale_is_stored_as_float32() -> None:
    w = np.ones((1, 128), dtype=np.int8)
    _, scale = unpack_i2s(pack_i2s(w, 0.1), (1, 128))
    assert scale == float(np.float32(0.1)) and scale != 0.1


def test_unpack_i2s_reports_code_3_location() -> None:
    w = np.zeros((2, 128), dtype=np.int8)
    data = bytearray(pack_i2s(w, 1.0))
    data[32 + 5] |= 0b11 << 2  # block 1 (row 1), group 2, position 5 -> col 64 + 5
    with pytest.raises(InputError, match=r"k_proj.*code 3.*row 1, col 69") as info:
        unpack_i2s(bytes(data), (2, 128), name="k_proj")
    assert "byte 37 bits [3:2]" in str(info.value)


@pytest.mark.parametrize(
    ("mangle", "shape", "fragment"),
    [
        (lambda d: d[:-29], (2, 128), "truncated"),  # the scale is cut
        (lambda d: d[:40], (2, 128), "truncated"),
        (lambda d: d + b"\0", (2, 128), "wrong shape"),
        (lambda d: d, (2, 192), "truncated"),
        (lambda d: d, (3, 100), "multiple of 128"),
        (lambda d: d, (2, 0), "positive"),
        (lambda d: d, (256,), "two positive ints"),
        (lambda d: d, (2.0, 128), "two positive ints"),
        (lambda d: d[:64] + struct.pack("<f", float("nan")) + d[68:], (2, 128), "scale"),
        (lambda d: "not bytes", (2, 128), "bytes-like"),
    ],
)
def test_bad_i2s_data_raises(mangle, shape, fragment: str) -> None:
    data = pack_i2s(np.zeros((2, 128), dtype=np.int8), 1.0)
    with pytest.raises(InputError, match=fragment) as info:
        unpack_i2s(mangle(data), shape, name="v_proj")
    assert "v_proj" in str(info.value)


@pytest.mark.parametrize(
    ("w", "scale", "fragment"),
    [
        (np.zeros((3, 100), dtype=np.int8), 1.0, "multiple of 128"),
        (np.zeros((1, 127), dtype=np.int8), 1.0, "multiple of 128"),
        (np.zeros((1, 128), dtype=np.int8), float("inf"), "scale"),
        (np.zeros((1, 128), dtype=np.int8), -1.0, "scale"),
        (np.zeros((1, 128), dtype=np.int8), [1.0, 2.0], "scale"),
    ],
)
def test_bad_i2s_pack_inputs_raise(w: np.ndarray, scale, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as info:
        pack_i2s(w, scale, name="down_proj.weight")
    assert "down_proj.weight" in str(info.value)
