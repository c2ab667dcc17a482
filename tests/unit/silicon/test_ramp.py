"""Defect-density ramps: start, floor, monotone fall, validation."""

import itertools
import math

import pytest
from pydantic import ValidationError

from tokenfab.silicon import DefectRampSpec, defect_density_at

pytestmark = pytest.mark.unit


def _ramp(**kwargs):
    base = {"initial_defect_density_per_cm2": 0.3, "mature_defect_density_per_cm2": 0.08, "time_constant_years": 0.5}
    return DefectRampSpec(**{**base, **kwargs})


def test_exponential_by_hand():
    ramp = _ramp()
    assert defect_density_at(ramp, 0.0) == pytest.approx(0.3)
    assert defect_density_at(ramp, 0.5) == pytest.approx(0.08 + 0.22 * math.exp(-1.0))
    assert defect_density_at(ramp, 100.0) == pytest.approx(0.08)
    assert defect_density_at(ramp, -1.0) == pytest.approx(0.3)  # flat before the ramp starts


def test_logistic_starts_at_initial_and_falls_fastest_at_midpoint():
    ramp = _ramp(shape="logistic", midpoint_years=1.0, time_constant_years=0.2)
    assert defect_density_at(ramp, 0.0) == pytest.approx(0.3)
    times = [0.0, 0.5, 0.9, 1.0, 1.1, 1.5, 3.0]
    values = [defect_density_at(ramp, t) for t in times]
    assert all(a >= b for a, b in itertools.pairwise(values))
    drop_mid = defect_density_at(ramp, 0.95) - defect_density_at(ramp, 1.05)
    drop_early = defect_density_at(ramp, 0.2) - defect_density_at(ramp, 0.3)
    assert drop_mid > drop_early
    assert defect_density_at(ramp, 1e6) == pytest.approx(0.08)  # no overflow far out


def test_ramp_must_fall():
    with pytest.raises(ValidationError, match="cannot make defects more frequent"):
        _ramp(mature_defect_density_per_cm2=0.5)
    with pytest.raises(ValidationError, match="logistic"):
        _ramp(midpoint_years=1.0)


def test_the_smic_reference_ramp_reproduces_the_feb_2025_point():
    from tokenfab.silicon import load_node

    ramp = load_node("smic-n+2").reference_ramp
    assert ramp is not None
    # Sep-2024 -> Feb-2025 is 5 months: the derived ramp must pass through D0 = 0.150
    assert defect_density_at(ramp, 5 / 12) == pytest.approx(0.150, abs=0.002)
