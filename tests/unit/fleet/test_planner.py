"""The planner on tiny instances: brute force, shortfalls, budgets, scenarios, duals."""

import json

import numpy as np
import pytest

from tokenfab.fleet import CapacityEstimate, plan_fleet

pytestmark = pytest.mark.unit


def _brute_force(spec) -> float:
    """Cheapest integer purchase plan for a one-model plan without running costs, by enumeration.

    Every combination of per-option, per-period purchases (0..supply) is tried at once with
    numpy. A purchase counts in a scenario only if its delivery period is available there;
    demand must be met in every period and scenario.
    """
    periods, options = spec.periods, spec.options
    capacity = {row.chip: row.tokens_per_s_per_chip for row in spec.capacity}
    demand = np.array([spec.models[0].tokens_per_s[p] for p in periods], dtype=float)
    scenarios = spec.scenario_list
    num_t = len(periods)
    ranges, price, serves = [], [], []
    for option in options:
        for order in range(num_t):
            arrives = order + option.lead_time_periods
            top = 0 if arrives >= num_t else int(option.supply)
            ranges.append(np.arange(top + 1))
            price.append(option.price)
            column = []
            for scenario in scenarios:
                cut_from = [
                    periods.index(u.from_period or periods[0]) for u in scenario.unavailable if option.name in u.options
                ]
                delivered = arrives < num_t and not any(arrives >= first for first in cut_from)
                column += [capacity[option.name] if delivered and arrives <= t else 0.0 for t in range(num_t)]
            serves.append(column)
    grid = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, len(ranges)).astype(float)
    served = grid @ np.array(serves)  # (combos, scenarios x periods)
    feasible = np.all(served >= np.tile(demand, len(scenarios)) - 1e-9, axis=1)
    return float((grid @ np.array(price))[feasible].min())


@pytest.mark.parametrize(
    ("variant", "by_hand"),
    [
        ({}, 25 * 1000),  # 25 chips of a (15 + 10 within supply)
        ({"a_supply": 12, "demand_p2": 2550}, 24 * 1000 + 2 * 1500),  # 26 chips, a capped at 2 x 12
        ({"a_supply": 12, "b_lead": 1, "demand_p2": 2550}, 24 * 1000 + 2 * 1500),
        ({"a_supply": 12, "demand_p2": 2550, "cut_b_from": "p2"}, 24 * 1000 + 2 * 1500),  # b bought in p1
    ],
)
def test_tiny_milp_equals_brute_force(make_plan, plan_dict, variant, by_hand):
    plan_dict["options"][0].update(supply=variant.get("a_supply", 15), integer=True)
    plan_dict["options"][1].update(supply=40, integer=True, lead_time_periods=variant.get("b_lead", 0))
    plan_dict["models"][0]["tokens_per_s"]["p2"] = variant.get("demand_p2", 2500)
    scenarios = [{"name": "open"}]
    if "cut_b_from" in variant:
        scenarios.append({"name": "cut", "unavailable": [{"options": ["b"], "from_period": variant["cut_b_from"]}]})
    spec = make_plan(
        options=plan_dict["options"], models=plan_dict["models"], scenarios=scenarios, solver={"mip_rel_gap": 0.0}
    )
    result = plan_fleet(spec)
    assert result.status == "optimal"
    assert _brute_force(spec) == by_hand
    assert result.objective == pytest.approx(by_hand, rel=1e-9)
    assert result.stats["is_mip"] and "fixed" in result.stats["duals_note"]


def test_infeasible_demand_reports_the_shortfall(make_plan):
    # 10 chips of 100 tokens/s can arrive in p1: 1,000 of the 1,500 demanded; p2 can catch up.
    spec = make_plan(
        models=[{"name": "m", "slo": {"ttft_s": 1, "tpot_s": 0.05}, "tokens_per_s": {"p1": 1500, "p2": 1500}}],
        options=[{"name": "a", "price": 1000, "server_share": 0, "supply": 10}],
        capacity=[
            {"chip": "a", "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 300, "source": "t"}
        ],
    )
    result = plan_fleet(spec)
    assert result.status == "infeasible"
    assert len(result.unmet_demand) == 1
    item = result.unmet_demand[0]
    assert (item.model, item.period, item.scenario) == ("m", "p1", "base")
    assert item.shortfall_tokens_per_s == pytest.approx(500.0, rel=1e-6)
    assert result.unmet_lines == ["m in p1 under scenario 'base': short by 500 tokens/s of 1,500 demanded (33.3%)"]
    as_dict = result.to_dict()
    assert as_dict["status"] == "infeasible" and as_dict["unmet_demand"][0]["shortfall_tokens_per_s"] == pytest.approx(
        500
    )


def test_a_cut_off_in_one_scenario_shows_as_that_scenarios_shortfall(make_plan):
    spec = make_plan(
        options=[{"name": "a", "price": 1000, "server_share": 0, "supply": {"p1": 10, "p2": 100}}],
        capacity=[
            {"chip": "a", "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 300, "source": "t"}
        ],
        scenarios=[{"name": "open"}, {"name": "cut", "unavailable": [{"options": ["a"], "from_period": "p2"}]}],
    )
    result = plan_fleet(spec)
    shortfalls = {(u.period, u.scenario): u.shortfall_tokens_per_s for u in result.unmet_demand}
    # in 'cut' nothing arrives in p2, so only the 10 chips p1 could supply serve 2,500 tokens/s
    assert shortfalls == {("p2", "cut"): pytest.approx(1500.0, rel=1e-6)}


def test_budget_binds_with_a_shadow_price(make_plan):
    spec = make_plan(budget={"total": 20_000})
    result = plan_fleet(spec)
    assert result.total_capex <= 20_000 * (1 + 1e-9)
    assert result.status == "infeasible"  # 25 chips needed, 20 affordable
    names = [b["constraint"] for b in result.binding_constraints]
    assert "budget total [base]" in names
    budget = next(b for b in result.binding_constraints if b["kind"] == "budget_total")
    assert budget["shadow_price"] < 0  # more budget, less unmet-demand penalty


def test_max_capacity_serves_what_the_budget_buys(make_plan):
    # 50,000 buys 50 chips of a (1,000 each, 100 tokens/s): 5,000 tokens/s = 2x the p2 demand of 2,500
    spec = make_plan(
        objective="max_capacity",
        budget={"total": 50_000},
        options=[{"name": "a", "price": 1000, "server_share": 0}],
        capacity=[
            {"chip": "a", "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 300, "source": "t"}
        ],
    )
    result = plan_fleet(spec)
    assert result.objective == pytest.approx(2.0, rel=1e-6)
    budget = next(b for b in result.binding_constraints if b["kind"] == "budget_total")
    assert budget["shadow_price"] == pytest.approx(100 / (1000 * 2500), rel=1e-3)  # d(multiple)/d(budget)


def test_two_stage_never_costs_more_in_expectation_than_robust(make_plan):
    scenarios = [
        {"name": "open", "probability": 0.7},
        {"name": "cut", "probability": 0.3, "unavailable": [{"options": ["a"], "from_period": "p2"}]},
    ]
    robust = plan_fleet(make_plan(scenarios=scenarios))
    staged = plan_fleet(make_plan(scenarios=scenarios, plan_kind="two-stage", first_stage_periods=1))
    robust_expected = sum(s["probability"] * (s["total_cost"] + s["unmet_penalty"]) for s in robust.scenarios)
    assert staged.objective <= robust_expected * (1 + 1e-9)
    first = [row for row in staged.by_period if row["period"] == "p1"]
    later = [row for row in staged.by_period if row["period"] == "p2"]
    assert all(row["scenario"] == "all" for row in first)
    assert all(row["scenario"] in ("open", "cut") for row in later)


def test_lead_time_delays_service_and_blocks_late_orders(make_plan, plan_dict):
    plan_dict["options"][1]["lead_time_periods"] = 1
    result = plan_fleet(make_plan(options=plan_dict["options"], budget={"total": 1e9}))
    assert not any(row["chip"] == "b" and row["period"] == "p2" for row in result.by_period)
    installed = {(r["period"], r["chip"]): r["installed_units"] for r in result.fleet}
    bought_b = sum(row["units"] for row in result.by_period if row["chip"] == "b")
    assert installed.get(("p1", "b"), 0.0) == 0.0
    assert installed.get(("p2", "b"), 0.0) == pytest.approx(bought_b)


def test_existing_units_reduce_purchases(make_plan):
    fresh = plan_fleet(make_plan())
    with_fleet = plan_fleet(
        make_plan(
            options=[
                {"name": "a", "price": 1000, "server_share": 0, "supply": 15, "existing_units": 10},
                {"name": "b", "price": 1500, "server_share": 0},
            ]
        )
    )
    assert with_fleet.total_capex == pytest.approx(fresh.total_capex - 10 * 1000)


def test_depreciation_accounting_counts_only_the_service_inside_the_horizon(make_plan):
    spec = make_plan(
        capex_accounting="depreciation",
        datacenter={
            "electricity_price_per_kwh": 0.0,
            "colocation_per_kw_month": 0.0,
            "network_frac_of_capex": 0.0,
            "depreciation_years": 2,
        },
    )
    result = plan_fleet(spec)
    bought = {row["period"]: row["units"] * 1000 for row in result.by_period if row["chip"] == "a"}
    counted = result.scenarios[0]["capex_counted"]
    assert counted == pytest.approx(bought.get("p1", 0.0) + 0.5 * bought.get("p2", 0.0))


def test_provider_is_called_once_per_pair_and_the_table_overrides_it(make_plan, plan_dict):
    calls = []

    def provider(chip, model, slo):
        calls.append((chip, model))
        return CapacityEstimate(tokens_per_s_per_chip=50.0, avg_power_w_per_chip=400.0, source="stub")

    spec = make_plan(capacity=plan_dict["capacity"][:1])  # only chip a is in the table
    result = plan_fleet(spec, capacity_provider=provider)
    assert calls == [("b", "m")]
    sources = {row["chip"]: row["source"] for row in result.capacity}
    assert sources == {"a": "test", "b": "stub"}


def test_in_house_chip_cost_follows_the_scenario_ramp(make_plan):
    ramp = {"initial_defect_density_per_cm2": 0.3, "mature_defect_density_per_cm2": 0.08, "time_constant_years": 0.5}
    made = {
        "name": "npu",
        "lead_time_periods": 0,
        "manufactured": {
            "chip_cost": {"node": "smic-n+2", "die_area_mm2": 600, "hbm_capacity_bytes": 96e9, "ramp": ramp},
            "wafers_per_period": 10,
        },
    }
    spec = make_plan(
        options=[made],
        capacity=[
            {"chip": "npu", "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 300, "source": "t"}
        ],
        scenarios=[{"name": "fast"}, {"name": "slow", "yield_ramps": {"npu": {**ramp, "time_constant_years": 2.0}}}],
    )
    result = plan_fleet(spec)
    cost = {(r["scenario"], r["period"]): r["cost_per_chip"] for r in result.silicon}
    supply = {(r["scenario"], r["period"]): r["supply_units"] for r in result.silicon}
    assert cost[("slow", "p1")] > cost[("fast", "p1")] and cost[("fast", "p2")] < cost[("fast", "p1")]
    row = next(r for r in result.silicon if r["scenario"] == "fast" and r["period"] == "p1")
    assert supply[("fast", "p1")] == pytest.approx(10 * row["good_chips_per_wafer"])
    # the robust plan buys at most what the slow ramp can supply
    bought = {r["period"]: r["units"] for r in result.by_period}
    assert bought["p1"] <= supply[("slow", "p1")] * (1 + 1e-9)


def test_result_is_json_and_has_the_stable_keys(make_plan):
    result = plan_fleet(make_plan(budget={"total": 1e6}))
    data = json.loads(json.dumps(result.to_dict()))
    for key in (
        "status",
        "objective",
        "total_capex",
        "budget",
        "by_period",
        "unmet_demand",
        "scenarios",
        "binding_constraints",
        "shadow_prices",
        "stats",
    ):
        assert key in data
    assert set(data["by_period"][0]) >= {"period", "chip", "units", "capex"}
    assert data["budget"] == 1e6 and data["currency"] == "USD"
    assert data["stats"]["num_variables"] > 0 and data["stats"]["num_constraints"] > 0


def test_foreign_prices_per_period_and_requests_demand(make_plan):
    # CNY plan; option a costs 100 USD at 7 CNY/USD in p1 and 120 USD from p2 on
    spec = make_plan(
        currency="CNY",
        exchange_rates=[{"currency": "USD", "rate": 7.0, "source": "test"}],
        models=[
            {
                "name": "m",
                "slo": {"ttft_s": 1, "tpot_s": 0.05},
                "requests_per_s": {"p1": 2, "p2": 4},
                "tokens_per_request": 500,  # 1,000 then 2,000 tokens/s
            }
        ],
        options=[
            {
                "name": "a",
                "price": {"value": 100, "currency": "USD", "source": "test"},
                "price_by_period": {"p1": 100, "p2": 120},
                "server_share": 0,
            }
        ],
        capacity=[
            {"chip": "a", "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 300, "source": "t"}
        ],
    )
    result = plan_fleet(spec)
    capex = {row["period"]: row["capex"] for row in result.by_period}
    # 20 chips serve 2,000 tokens/s; with no running cost it pays to buy them all before the rise
    assert capex == {"p1": pytest.approx(20 * 700)}
    assert result.currency == "CNY"


def test_a_model_that_does_not_fit_counts_as_zero_capacity(make_plan, plan_dict):
    from tokenfab.errors import DoesNotFitError

    def provider(chip, model, slo):
        raise DoesNotFitError(f"{model} does not fit on {chip}")

    result = plan_fleet(make_plan(capacity=plan_dict["capacity"][:1]), capacity_provider=provider)
    row = next(r for r in result.capacity if r["chip"] == "b")
    assert row["tokens_per_s_per_chip"] == 0.0 and row["source"].startswith("does not fit")
    assert all(r["chip"] == "a" for r in result.by_period)


def test_a_chip_yaml_path_works_like_a_catalog_name(make_plan, tmp_path):
    from tokenfab.hardware.catalog import CHIP_DIR

    path = tmp_path / "my-chip.yaml"
    path.write_text((CHIP_DIR / "h100-sxm.yaml").read_text())
    spec = make_plan(
        options=[{"name": "mine", "chip": str(path), "price": 1000, "server_share": 0}],
        capacity=[
            {"chip": str(path), "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 300, "source": "t"}
        ],
    )
    assert plan_fleet(spec).status == "optimal"
