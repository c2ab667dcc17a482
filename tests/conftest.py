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


def shared_dir_or_none():
    """The team's shared data folder ($TOKENFAB_SHARED_DIR, or ../shared next to the repository), or None."""
    from tokenfab.errors import DataFileError
    from tokenfab.calibrate.measurements import shared_calibration_dir

    try:
        return shared_calibration_dir().parent
    except DataFileError:
        return None


SHARED_MISSING = "needs the shared data folder (../shared or $TOKENFAB_SHARED_DIR), which is absent"


def pytest_collection_modifyitems(config, items):
    """Tests marked `calibration` compare with measured data in shared/: skip them, with the reason, without it."""
    if shared_dir_or_none() is not None:
        return
    skip = pytest.mark.skip(reason=SHARED_MISSING)
    for item in items:
        if item.get_closest_marker("calibration"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_dir():
    """../shared (or $TOKENFAB_SHARED_DIR); tests using it skip with a reason when it is absent."""
    found = shared_dir_or_none()
    if found is None:
        pytest.skip(SHARED_MISSING)
    return found


@pytest.fixture(scope="session")
def shared_traces(shared_dir):
    """../shared/traces (or $TOKENFAB_SHARED_DIR/traces)."""
    traces = shared_dir / "traces"
    if not traces.is_dir():
        pytest.skip(f"{traces} is absent ({SHARED_MISSING})")
    return traces
