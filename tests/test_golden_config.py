from __future__ import annotations

import pytest

from tritium.golden import ArrayConfig, ConfigError, safe_k
from tritium.golden.config import min_acc_bits


def test_default_config_is_valid() -> None:
    cfg = ArrayConfig()
    assert cfg.pes == cfg.rows * cfg.cols
    assert ArrayConfig.from_dict(cfg.to_dict()) == cfg


def test_safe_k_is_exact_limit() -> None:
    for act_bits in (2, 4, 8):
        for acc_bits in range(act_bits + 1, 33):
            k = safe_k(act_bits, acc_bits)
            worst = 2 ** (act_bits - 1)  # -128 * -1
            assert k * worst <= 2 ** (acc_bits - 1) - 1
            assert (k + 1) * worst > 2 ** (acc_bits - 1) - 1


def test_min_acc_bits_is_narrowest() -> None:
    for k in (1, 7, 255, 256, 2560, 6912):
        bits = min_acc_bits(8, k)
        assert safe_k(8, bits) >= k
        assert safe_k(8, bits - 1) < k


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"rows": 0}, "rows must be in 1..255, got 0"),
        ({"cols": -3}, "cols must be in 1..255, got -3"),
        ({"rows": 2.5}, "rows must be an integer"),
        ({"act_bits": 1}, "act_bits must be in 2..8"),
        ({"acc_bits": 8}, "acc_bits must be in 9..32"),
        ({"acc_bits": 40}, "acc_bits must be in 9..32"),
        ({"dataflow": "xyz"}, "dataflow must be one of"),
        ({"act_depth": 0}, "act_depth must be in 1..65535"),
        ({"weight_tiles": 0}, "weight_tiles must be in 1..65535"),
        ({"max_k": 0}, "max_k must be >= 1"),
        ({"clock_mhz": 0}, "clock_mhz must be > 0"),
    ],
)
def test_bad_config_names_parameter(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        ArrayConfig(**kwargs)


def test_overflowing_config_says_which_k_is_safe() -> None:
    with pytest.raises(ConfigError) as info:
        ArrayConfig(acc_bits=16, max_k=4096)
    msg = str(info.value)
    assert "max_k=4096" in msg and "acc_bits=16" in msg
    assert f"at most {safe_k(8, 16)}" in msg
    assert f"raise acc_bits to {min_acc_bits(8, 4096)}" in msg


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown ArrayConfig parameter"):
        ArrayConfig.from_dict({"rows": 4, "colz": 4})


def test_key_changes_with_any_field() -> None:
    base = ArrayConfig()
    assert base.key() == ArrayConfig().key()
    assert ArrayConfig(rows=9).key() != base.key()
    assert ArrayConfig(clock_mhz=200).key() != base.key()
