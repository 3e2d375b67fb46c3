from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--waves", action="store_true",
                     help="dump FST waveforms from the cocotb benches into build/sim/*/")


@pytest.fixture
def waves(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--waves"))
