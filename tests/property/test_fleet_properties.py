"""Invariants of the fleet planner and the silicon cost model on small random instances.

Instances are tiny (2-3 options, 2-3 periods, 1-2 models, 2-4 scenarios) so each example
solves in milliseconds; every random choice comes from hypothesis, so a derandomised CI
profile replays the same examples.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenfab.fleet import PlanSpec, datacenter_defaults, plan_fleet
from tokenfab.silicon import ChipCostSpec, defect_density_from_yield, die_yield_frac, estimate_chip_cost

pytestmark = pytest.mark.property

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A fixed unmet-demand price: the default one depends on the prices in every scenario, and a
# property that compares plans over different scenario sets must price shortfalls the same way.
PENALTY = 1e6


@st.composite
def scenario_specs(draw, options: list[str], periods: list[str]) -> dict:
    """A scenario that may cut one option off from some period and reprice one option."""
    scenario: dict = {"name": "", "demand_multiplier": draw(st.floats(0.5, 1.5))}
    if draw(st.booleans()):
        cut = draw(st.sampled_from(options))
        scenario["unavailable"] = [{"options": [cut], "from_period": draw(st.sampled_from(periods))}]
    if draw(st.booleans()):
        scenario["price_multiplier"] = {draw(st.sampled_from(options)): draw(st.floats(0.8, 1.5))}
    return scenario


@st.composite
def small_plans(draw, *, with_budget: bool = False) -> dict:
    num_periods = draw(st.integers(2, 3))
    num_options = draw(st.integers(2, 3))
    num_models = draw(st.integers(1, 2))
    periods = [f"p{t}" for t in range(num_periods)]
    options = [f"o{i}" for i in range(num_options)]
    models = [f"m{m}" for m in range(num_models)]
    model_specs = [
        {
            "name": model,
            "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
            "tokens_per_s": {p: draw(st.floats(100, 5000)) for p in periods},
        }
        for model in models
    ]
    option_specs = [
        {
            "name": name,
            "price": draw(st.floats(500, 5000)),
            "server_share": 0.0,
            "supply": draw(st.floats(5, 60)),
            "lead_time_periods": draw(st.integers(0, 1)),
        }
        for name in options
    ]
    capacity = [
        {
            "chip": name,
            "model": model,
            "tokens_per_s_per_chip": draw(st.sampled_from([0.0, 50.0, 100.0, 200.0])),
            "avg_power_w_per_chip": draw(st.floats(100, 800)),
            "source": "hypothesis",
        }
        for name in options
        for model in models
    ]
    capacity[0]["tokens_per_s_per_chip"] = 100.0  # at least one option serves something
    scenarios = draw(st.lists(scenario_specs(options, periods), min_size=2, max_size=4))
    for s, scenario in enumerate(scenarios):
        scenario["name"] = f"s{s}"
    plan = {
        "periods": periods,
        "period_years": 0.5,
        "models": model_specs,
        "options": option_specs,
        "capacity": capacity,
        "scenarios": scenarios,
        "datacenter": {"electricity_price_per_kwh": 0.1, "colocation_per_kw_month": 100.0},
        "solver": {"unmet_penalty_per_token_per_s_year": PENALTY},
    }
    if with_budget:
        plan["budget"] = {
            "total": draw(st.floats(2e4, 5e5)),
            "per_period": draw(st.floats(1e4, 3e5)),
        }
    return plan


@PROPERTY_SETTINGS
@given(plan=small_plans(), drop=st.integers(0, 3))
def test_removing_a_scenario_never_makes_the_robust_plan_dearer(plan, drop):
    full = plan_fleet(PlanSpec.model_validate(plan))
    fewer = dict(plan)
    fewer["scenarios"] = [s for k, s in enumerate(plan["scenarios"]) if k != drop % len(plan["scenarios"])]
    reduced = plan_fleet(PlanSpec.model_validate(fewer))
    # exact up to the 1e-6 expected-cost tie-break and solver tolerances
    assert reduced.objective <= full.objective * (1 + 1e-5) + 1e-6


@PROPERTY_SETTINGS
@given(plan=small_plans(with_budget=True), kind=st.sampled_from(["robust", "two-stage"]))
def test_a_plan_never_exceeds_budget_or_supply(plan, kind):
    spec = PlanSpec.model_validate({**plan, "plan_kind": kind})
    result = plan_fleet(spec)
    budget = plan["budget"]
    for scenario in result.scenarios:
        assert scenario["capex"] <= budget["total"] * (1 + 1e-7) + 1e-6
    # per-period spend per scenario, recomputed from units and that scenario's prices
    network = datacenter_defaults().network_frac_of_capex.value
    price = {o["name"]: o["price"] for o in plan["options"]}
    supply = {o["name"]: o["supply"] for o in plan["options"]}
    spent: dict[tuple[str, str], float] = {}
    for row in result.by_period:
        assert row["units"] <= supply[row["chip"]] * (1 + 1e-7) + 1e-9
        for scenario in plan["scenarios"]:
            if row["scenario"] not in ("all", scenario["name"]):
                continue
            factor = scenario.get("price_multiplier", {}).get(row["chip"], 1.0)
            key = (row["period"], scenario["name"])
            spent[key] = spent.get(key, 0.0) + row["units"] * price[row["chip"]] * factor / (1 - network)
    for value in spent.values():
        assert value <= budget["per_period"] * (1 + 1e-7) + 1e-6


@PROPERTY_SETTINGS
@given(plan=small_plans())
def test_two_stage_recourse_never_raises_expected_cost(plan):
    robust = plan_fleet(PlanSpec.model_validate({**plan, "plan_kind": "robust"}))
    staged = plan_fleet(PlanSpec.model_validate({**plan, "plan_kind": "two-stage", "first_stage_periods": 1}))
    robust_expected = sum(s["probability"] * (s["total_cost"] + s["unmet_penalty"]) for s in robust.scenarios)
    assert staged.objective <= robust_expected * (1 + 1e-5) + 1e-6


@PROPERTY_SETTINGS
@given(
    area=st.floats(20.0, 850.0),
    d0=st.floats(0.01, 1.0),
    factor=st.floats(0.1, 0.95),
    model=st.sampled_from(["poisson", "murphy", "seeds", "negative-binomial"]),
)
def test_chip_cost_falls_when_yield_rises(area, d0, factor, model):
    def cost(density: float) -> float:
        spec = ChipCostSpec(
            node="tsmc-n7",
            die_area_mm2=area,
            defect_density_per_cm2=density,
            yield_model=model,
            clustering_alpha=1.5 if model == "negative-binomial" else None,
        )
        return estimate_chip_cost(spec).cost_per_good_chip_usd

    assert cost(d0 * factor) < cost(d0)


@PROPERTY_SETTINGS
@given(
    target=st.floats(0.01, 0.999),
    area=st.floats(10.0, 900.0),
    model=st.sampled_from(["poisson", "murphy", "seeds", "negative-binomial"]),
)
def test_defect_density_inverts_the_yield_model(target, area, model):
    alpha = 0.7 if model == "negative-binomial" else None
    d0 = defect_density_from_yield(target, area, model, alpha)
    assert d0 > 0 and math.isfinite(d0)
    assert die_yield_frac(d0, area, model, alpha) == pytest.approx(target, rel=1e-7)


def _with_shared_hbm(plan: dict, stacks: float, per_chip: list[int]) -> dict:
    """Every option carries HBM stacks from one shared supply; each scenario may squeeze it."""
    plan = dict(plan)
    plan["components"] = [{"name": "hbm", "kind": "hbm", "unit": "stacks", "supply": stacks, "source": "hypothesis"}]
    plan["options"] = [
        {**option, "bill_of_materials": {"hbm": "hbm", "hbm_stacks_per_chip": per_chip[k % len(per_chip)]}}
        for k, option in enumerate(plan["options"])
    ]
    plan["scenarios"] = [
        {**scenario, "component_supply_multiplier": {"hbm": 0.5 if k % 2 else 1.0}}
        for k, scenario in enumerate(plan["scenarios"])
    ]
    return plan


@PROPERTY_SETTINGS
@given(
    plan=small_plans(),
    stacks=st.floats(20, 400),
    per_chip=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    kind=st.sampled_from(["robust", "two-stage"]),
)
def test_shared_components_are_never_overdrawn_and_more_supply_never_costs_more(plan, stacks, per_chip, kind):
    plan["plan_kind"] = kind
    tight = plan_fleet(PlanSpec.model_validate(_with_shared_hbm(plan, stacks, per_chip)))
    for row in tight.component_use:
        assert row["used"] <= row["supply"] * (1 + 1e-6) + 1e-6
    ample = plan_fleet(PlanSpec.model_validate(_with_shared_hbm(plan, 2 * stacks, per_chip)))
    assert ample.objective <= tight.objective * (1 + 1e-5) + 1e-6
    for price in tight.shadow_prices:
        if price["kind"] == "component":
            assert price["shadow_price"] <= 1e-6  # more of a part can only lower cost
