"""Shared fixtures: tiny hand-checkable chips and profiles, and hypothesis settings."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from testkit import make_chip, make_cost

from tokenfab.cost.chip_cost import ChipCost
from tokenfab.hardware.spec import ChipSpec

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=40)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def tiny_chip() -> ChipSpec:
    return make_chip()


@pytest.fixture
def ideal_cost() -> ChipCost:
    # 256 MB of on-chip memory: the operand panels of the hand-computed shapes fit, so each operand is
    # read from DRAM once (tokenfab.cost.onchip; tests/unit/cost/test_onchip.py covers the re-reads)
    return make_cost(make_chip(sram=256e6))


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/*.json from current outputs")
    parser.addoption("--update-regression", action="store_true",
                     help="rewrite tests/regression/predictions.json (the prediction-regression gate) from current outputs")


@pytest.fixture
def update_golden(request) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def update_regression(request) -> bool:
    return bool(request.config.getoption("--update-regression"))


@pytest.fixture(scope="session")
def shared_traces():
    """../shared/traces (or $TOKENFAB_SHARED_DIR/traces)."""
    from tokenfab.calibrate.measurements import shared_calibration_dir

    return shared_calibration_dir().parent / "traces"
