"""The energy table (shipped data, node scaling, user tables) and the event -> joule model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritium.golden.checks import InputError
from tritium.golden.energy import (
    COMPONENTS,
    GROUPS,
    REQUIRED_OPS,
    EnergyEvents,
    EnergyTable,
    EnergyTableError,
    energy_of,
    group,
)


@pytest.fixture(scope="module")
def table() -> EnergyTable:
    return EnergyTable.load()


def test_shipped_table_holds_horowitz_45nm(table: EnergyTable) -> None:
    # DESIGN.md's table, exactly
    want = {"int_add_8": 0.03, "int_add_16": 0.05, "int_add_32": 0.1, "int_mul_8": 0.2,
            "int_mul_32": 3.1, "fp_add_16": 0.4, "fp_add_32": 0.9, "fp_mul_16": 1.1,
            "fp_mul_32": 3.7, "sram_64b_8kb": 10.0, "dram_64b": 1300.0}
    for op, pj in want.items():
        assert table.ops[op] == pytest.approx(pj), op
    assert table.node_nm == 45
    assert "Horowitz" in table.source and "ISSCC 2014" in table.source
    assert "Stillmaker" in table.scaling_source
    assert all(op in table.ops for op in REQUIRED_OPS)
    # every operation says where its number comes from (and the assumptions say so)
    assert set(table.op_sources) == set(table.ops)
    assert "assumption" in table.op_sources["register_bit_write"]


def test_node_scaling_factors(table: EnergyTable) -> None:
    assert table.scale_factor(45) == 1.0
    assert table.scale_factor(7) == pytest.approx(0.094)
    assert table.scale_factor(5) == pytest.approx(0.080)
    # log-log interpolation: between the neighbours, monotone in the node
    f16, f28 = table.scale_factor(16), table.scale_factor(28)
    assert 0.094 < f16 < f28 < 1.0
    with pytest.raises(InputError, match="outside the energy table's scaling range 5..45"):
        table.scale_factor(90)
    with pytest.raises(InputError, match="node_nm must be a positive number"):
        table.scale_factor(0)


def test_at_node_scales_logic_not_dram(table: EnergyTable) -> None:
    t7 = table.at_node(7)
    assert t7.node_nm == 7 and t7.base_node_nm == 45
    assert t7.ops["int_add_32"] == pytest.approx(0.1 * 0.094)
    assert t7.ops["sram_64b_8kb"] == pytest.approx(10 * 0.094)
    assert t7.ops["dram_64b"] == table.ops["dram_64b"]
    # scaling is consistent from the scaled copy too
    assert t7.scale_factor(5) == pytest.approx(0.080 / 0.094)
    back = t7.at_node(45)
    assert back.ops["int_add_32"] == pytest.approx(0.1)
    t16 = table.at_node(16)
    assert t16.at_node(5).ops["int_add_8"] == pytest.approx(table.at_node(5).ops["int_add_8"])
    assert table.at_node(None) is table


def test_add_and_sram_prices(table: EnergyTable) -> None:
    assert table.add_pj(8) == pytest.approx(0.03)
    assert table.add_pj(32) == pytest.approx(0.1)
    assert table.add_pj(24) == pytest.approx(0.075)     # linear between 16 and 32
    assert table.add_pj(4) == pytest.approx(0.015)
    assert table.sram_64b_pj(512) == 10.0               # no cheaper point below 8 KB
    assert table.sram_64b_pj(8 * 1024) == 10.0
    assert 10.0 < table.sram_64b_pj(16 * 1024) < 20.0
    assert table.sram_64b_pj(1 << 20) == 100.0
    assert table.dram_byte_pj == pytest.approx(1300 / 8)


def test_energy_is_events_times_table(table: EnergyTable) -> None:
    ev = EnergyEvents(pe_adds=1000, output_adds=10, add_bits=32, register_write_bits=4000,
                      idle_pe_cycles=500, pe_register_bits=42, sram_weight_bits=640,
                      sram_act_bits=128, sram_out_bits=64, weight_buffer_bytes=512,
                      act_buffer_bytes=2048, out_buffer_bytes=8192, dram_bytes=8)
    e = energy_of(table, ev)
    assert tuple(e) == COMPONENTS
    pj = 1e-12
    assert e["pe_adds"] == pytest.approx(1000 * 0.1 * pj)
    assert e["output_adds"] == pytest.approx(10 * 0.1 * pj)
    assert e["registers"] == pytest.approx(4000 * 0.004 * pj)
    assert e["sram_weight"] == pytest.approx(10 * 10 * pj)
    assert e["sram_act"] == pytest.approx(2 * 10 * pj)
    assert e["sram_out"] == pytest.approx(1 * 10 * pj)
    assert e["dram"] == pytest.approx(1300 * pj)
    assert e["idle"] == pytest.approx(500 * 42 * 0.001 * pj)
    g = group(e)
    assert set(g) == set(GROUPS) == {"pe_adds", "registers", "sram", "dram", "idle"}
    assert sum(g.values()) == pytest.approx(sum(e.values()))


def _write(tmp_path: Path, data: object, name: str = "mine.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


MINIMAL = {"int_add_8": 0.01, "int_add_16": 0.02, "int_add_32": 0.04, "sram_64b_8kb": 5,
           "dram_64b": 640, "register_bit_write": 0.002, "register_bit_idle": 0.0}


def test_custom_table(tmp_path: Path) -> None:
    t = EnergyTable.load(_write(tmp_path, {"name": "mine", "node_nm": 16,
                                           "operations": MINIMAL}))
    assert t.name == "mine" and t.node_nm == 16 and t.ops["dram_64b"] == 640
    assert t.sram_64b_pj(1 << 20) == 5          # one SRAM point: used for every size
    # no scaling section: its own node works, any other is a clear error
    assert t.at_node(16) is t
    with pytest.raises(InputError, match="has no \"scaling\" section"):
        t.at_node(7)
    scaled = EnergyTable.load(_write(tmp_path, {
        "node_nm": 16, "operations": {k: {"pj": v} for k, v in MINIMAL.items()},
        "scaling": {"energy_factor": {"16": 1.0, "7": 0.5}, "not_scaled": ["dram_64b"]}}))
    t7 = scaled.at_node(7)
    assert t7.ops["int_add_32"] == pytest.approx(0.02) and t7.ops["dram_64b"] == 640


@pytest.mark.parametrize(("data", "message"), [
    ({"operations": {k: v for k, v in MINIMAL.items() if k != "dram_64b"}},
     "missing operation(s) dram_64b"),
    ({"operations": {**MINIMAL, "int_add_8": -1}}, "operation 'int_add_8' must be a finite"),
    ({"operations": {**MINIMAL, "int_add_8": "cheap"}}, "operation 'int_add_8' must be"),
    ({"ops": MINIMAL}, "needs an \"operations\" object"),
    ([1, 2], "must hold a JSON object"),
    ({"operations": MINIMAL, "node_nm": 0}, "node_nm must be a positive number"),
    ({"operations": MINIMAL, "scaling": {"energy_factor": {"7": 0.1}}},
     "must list the table's own node_nm=45"),
    ({"operations": MINIMAL, "scaling": {"energy_factor": {"45": 1, "x": 0.1}}},
     "scaling node 'x' is not a number"),
])
def test_bad_tables_name_the_file_and_problem(tmp_path: Path, data, message) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(EnergyTableError) as info:
        EnergyTable.load(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_unreadable_tables(tmp_path: Path) -> None:
    with pytest.raises(EnergyTableError, match="not found"):
        EnergyTable.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EnergyTableError, match="not valid JSON"):
        EnergyTable.load(bad)
