"""Tiny, hand-checkable plans for the fleet tests."""

from __future__ import annotations

import copy

import pytest

from tokenfab.fleet import PlanSpec

# Running costs off: with no electricity, facility, server or network cost, a plan's cost is
# the sum of chip prices, which a test can check by hand.
FREE_DATACENTER = {"electricity_price_per_kwh": 0.0, "colocation_per_kw_month": 0.0, "network_frac_of_capex": 0.0}


def tiny_plan_dict() -> dict:
    """Two periods, one model, two options (a: cheap per token, b: dear), one scenario."""
    return {
        "name": "tiny",
        "periods": ["p1", "p2"],
        "period_years": 1.0,
        "models": [{"name": "m", "slo": {"ttft_ms": 1000, "tpot_ms": 50}, "tokens_per_s": {"p1": 1000, "p2": 2500}}],
        "options": [
            {"name": "a", "price": 1000, "server_share": 0, "supply": 15},
            {"name": "b", "price": 1500, "server_share": 0},
        ],
        "capacity": [
            {"chip": "a", "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 300, "source": "test"},
            {"chip": "b", "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 500, "source": "test"},
        ],
        "datacenter": dict(FREE_DATACENTER),
    }


@pytest.fixture
def plan_dict() -> dict:
    """A fresh copy of tiny_plan_dict() to edit."""
    return tiny_plan_dict()


@pytest.fixture
def make_plan():
    """make_plan(**top_level_overrides) -> PlanSpec built from tiny_plan_dict()."""

    def build(**overrides) -> PlanSpec:
        data = copy.deepcopy(tiny_plan_dict())
        data.update(overrides)
        return PlanSpec.model_validate(data)

    return build
