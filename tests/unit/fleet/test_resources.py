"""Shared components, NRE build-or-not, vendor bans, power build-out and regret, on hand-checkable plans."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tokenfab.fleet import PlanSpec, plan_fleet
from tokenfab.silicon.chip_cost import ChipCostSpec, estimate_chip_cost


pytestmark = pytest.mark.unit


def _one_period(base: dict, demand: float) -> dict:
    plan = copy.deepcopy(base)
    plan["periods"] = ["p1"]
    plan["models"][0]["tokens_per_s"] = demand
    plan["options"][0].pop("supply")
    return plan


def _hbm_plan(base: dict, stacks: float) -> dict:
    """a (1000, 2 stacks) and b (1500, 1 stack) share one HBM supply; 25 chips of 100 tokens/s needed."""
    plan = _one_period(base, 2500)
    plan["components"] = [{"name": "hbm3", "kind": "hbm", "unit": "stacks", "supply": stacks, "source": "test"}]
    plan["options"][0]["bill_of_materials"] = {"hbm": "hbm3", "hbm_stacks_per_chip": 2}
    plan["options"][1]["bill_of_materials"] = {"hbm": "hbm3", "hbm_stacks_per_chip": 1}
    return plan


def _units(result, chip: str) -> float:
    return sum(row["units"] for row in result.by_period if row["chip"] == chip)


def test_shared_hbm_binds_with_the_hand_computed_shadow_price(plan_dict):
    # 2x + y <= 30 stacks and x + y >= 25 chips: x = 5, y = 20, cost 5 x 1000 + 20 x 1500 = 35,000.
    # One more stack turns one b into one a: the stack is worth 1500 - 1000 = 500.
    result = plan_fleet(PlanSpec.model_validate(_hbm_plan(plan_dict, 30)))
    assert _units(result, "a") == pytest.approx(5)
    assert _units(result, "b") == pytest.approx(20)
    assert result.scenarios[0]["total_cost"] == pytest.approx(35_000)
    rows = [p for p in result.shadow_prices if p["kind"] == "component"]
    assert len(rows) == 1 and rows[0]["component"] == "hbm3"
    assert rows[0]["shadow_price"] == pytest.approx(-500, rel=1e-4)  # cost falls 500 per extra stack
    binding = [b for b in result.binding_constraints if b["kind"] == "component"]
    assert binding and binding[0]["activity"] == pytest.approx(30)
    use = [u for u in result.component_use if u["component"] == "hbm3"]
    assert use[0]["used"] == pytest.approx(30) and use[0]["supply"] == 30


def test_ample_hbm_does_not_bind_and_costs_nothing(plan_dict):
    result = plan_fleet(PlanSpec.model_validate(_hbm_plan(plan_dict, 1000)))
    assert _units(result, "a") == pytest.approx(25)
    assert not [p for p in result.shadow_prices if p["kind"] == "component"]


def test_hbm_export_ban_scenario_cuts_the_component_and_the_plan_follows(plan_dict):
    plan = _hbm_plan(plan_dict, 1000)
    plan["options"].append({"name": "c", "price": 3000, "server_share": 0})  # no HBM needed, dear
    plan["capacity"].append(dict(plan["capacity"][0], chip="c"))
    plan["scenarios"] = [{"name": "hbm-banned", "component_supply_multiplier": {"hbm3": 0.0}}]
    result = plan_fleet(PlanSpec.model_validate(plan))
    assert _units(result, "c") == pytest.approx(25)
    assert _units(result, "a") == pytest.approx(0) and _units(result, "b") == pytest.approx(0)


def _nre_plan(base: dict, nre_usd: float) -> tuple[dict, float]:
    """Bought b (1500 per chip) or an in-house chip n at its silicon cost plus a one-off NRE."""
    plan = _one_period(base, 1000)
    plan["options"] = [
        {"name": "b", "price": 1500, "server_share": 0},
        {
            "name": "n",
            "server_share": 0,
            "manufactured": {
                "chip_cost": {"node": "tsmc-n7", "die_area_mm2": 100, "packaging": "conventional"},
                "wafers_per_period": 1000,
                "nre": {"design": nre_usd, "source": "test"},
            },
        },
    ]
    plan["capacity"] = [
        {"chip": name, "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 300, "source": "test"}
        for name in ("b", "n")
    ]
    unit = estimate_chip_cost(
        ChipCostSpec(node="tsmc-n7", die_area_mm2=100, packaging="conventional")
    ).cost_per_good_chip_usd
    return plan, unit


def test_build_or_not_flips_at_the_hand_computed_nre_threshold(plan_dict):
    # 10 chips serve 1000 tokens/s either way: build iff NRE + 10 x unit < 10 x 1500.
    _, unit = _nre_plan(plan_dict, 0.0)
    threshold = 10 * (1500 - unit)
    assert 0 < threshold < 15_000
    below = plan_fleet(PlanSpec.model_validate(_nre_plan(plan_dict, threshold - 50)[0]))
    above = plan_fleet(PlanSpec.model_validate(_nre_plan(plan_dict, threshold + 50)[0]))
    assert below.build_decisions == [{"chip": "n", "built": True, "nre": pytest.approx(threshold - 50)}]
    assert _units(below, "n") == pytest.approx(10) and _units(below, "b") == pytest.approx(0)
    assert above.build_decisions[0]["built"] is False
    assert _units(above, "b") == pytest.approx(10) and _units(above, "n") == pytest.approx(0)
    assert below.scenarios[0]["total_cost"] == pytest.approx(15_000 - 50, rel=1e-6)
    assert above.scenarios[0]["total_cost"] == pytest.approx(15_000, rel=1e-6)
    assert below.stats["is_mip"] and below.scenarios[0]["nre"] == pytest.approx(threshold - 50)


def test_nre_counts_against_the_budget(plan_dict):
    # NRE of 1000 is paid in p1, whose budget is 500; chips are needed only in p2.
    plan, _ = _nre_plan(plan_dict, 1000.0)
    plan["periods"] = ["p1", "p2"]
    plan["models"][0]["tokens_per_s"] = {"p1": 0, "p2": 1000}
    unconstrained = plan_fleet(PlanSpec.model_validate(plan))
    plan["budget"] = {"per_period": {"p1": 500, "p2": 1e9}}
    result = plan_fleet(PlanSpec.model_validate(plan))
    assert unconstrained.build_decisions[0]["built"] is True
    assert result.build_decisions[0]["built"] is False
    assert _units(result, "b") == pytest.approx(10)


def test_ready_period_blocks_deliveries_before_the_design_is_done(plan_dict):
    # n has no supply bound of its own (only a roomy wafer component), so every purchase column the
    # build link constrains is unbounded or zero: the big-M must still let 10 chips through in p2.
    plan, _ = _nre_plan(plan_dict, 0.0)
    plan["periods"] = ["p1", "p2"]
    plan["models"][0]["tokens_per_s"] = {"p1": 1000, "p2": 2000}
    plan["components"] = [{"name": "n7", "kind": "wafers", "unit": "wafers", "supply": 1e4, "source": "test"}]
    plan["options"][1]["manufactured"].pop("wafers_per_period")
    plan["options"][1]["manufactured"]["nre"]["ready_period"] = "p2"
    plan["options"][1]["bill_of_materials"] = {"wafers": "n7"}
    result = plan_fleet(PlanSpec.model_validate(plan))
    bought = {(row["chip"], row["period"]): row["units"] for row in result.by_period}
    assert bought == {("b", "p1"): pytest.approx(10), ("n", "p2"): pytest.approx(10)}
    assert result.build_decisions[0]["built"] is True


def _falling_price(plan: dict) -> dict:
    """a gets cheaper in p2 (1000 -> 600), so without a ban one buys it as late as possible."""
    plan["options"][0].pop("supply")
    plan["options"][0]["price_by_period"] = {"p1": 1000, "p2": 600}
    return plan


def test_vendor_ban_takes_a_bought_chip_away_and_changes_the_plan(plan_dict):
    base = copy.deepcopy(plan_dict)
    open_market = plan_fleet(PlanSpec.model_validate(_falling_price(plan_dict)))
    banned = _falling_price(copy.deepcopy(base))
    banned["scenarios"] = [{"name": "a-banned-from-p2", "unavailable": [{"options": ["a"], "from_period": "p2"}]}]
    result = plan_fleet(PlanSpec.model_validate(banned))
    bought = {(row["chip"], row["period"]): row["units"] for row in open_market.by_period}
    assert bought == {("a", "p1"): pytest.approx(10), ("a", "p2"): pytest.approx(15)}  # 10,000 + 9,000
    # Banned from p2: stock up on a in p1 (25 x 1000 = 25,000) beats 10 a + 15 b (32,500).
    bought = {(row["chip"], row["period"]): row["units"] for row in result.by_period}
    assert bought == {("a", "p1"): pytest.approx(25)}
    assert result.scenarios[0]["total_cost"] == pytest.approx(25_000)


def test_wafers_shared_by_a_bought_and_a_manufactured_chip_follow_the_silicon_model(plan_dict):
    silicon = {"node": "tsmc-n7", "die_area_mm2": 400, "packaging": "conventional"}
    plan = _one_period(plan_dict, 3000)
    plan["components"] = [{"name": "n7", "kind": "wafers", "unit": "wafers", "supply": 0.2, "source": "test"}]
    plan["options"] = [
        {"name": "bought", "price": 1000, "server_share": 0, "bill_of_materials": {"wafers": "n7", "silicon": silicon}},
        {
            "name": "made",
            "server_share": 0,
            "manufactured": {"chip_cost": silicon, "markup_frac": 3.0},
            "bill_of_materials": {"wafers": "n7"},
        },
        {"name": "spare", "price": 10_000, "server_share": 0},
    ]
    plan["capacity"] = [
        {"chip": name, "model": "m", "tokens_per_s_per_chip": 100, "avg_power_w_per_chip": 300, "source": "test"}
        for name in ("bought", "made", "spare")
    ]
    result = plan_fleet(PlanSpec.model_validate(plan))
    good = estimate_chip_cost(ChipCostSpec(**silicon)).good_chips_per_wafer
    dies_fed = 0.2 * good  # the shared wafers feed this many chips of either kind, no more
    assert _units(result, "bought") + _units(result, "made") == pytest.approx(dies_fed, rel=1e-6)
    assert _units(result, "spare") == pytest.approx(30 - dies_fed, rel=1e-6)


def test_power_build_out_adds_facility_power_after_its_lead_time(plan_dict):
    plan_dict["options"][0].pop("supply")
    per_chip_w = 300 * 1.8 * 1.3  # average power x default server ratio x default PUE
    plan_dict["limits"] = {
        "facility_power_w": 10 * per_chip_w,  # room for the 10 chips of p1 only
        "power_build": {"cost_per_mw": 1e6, "lead_time_periods": 1, "source": "test"},
    }
    result = plan_fleet(PlanSpec.model_validate(plan_dict))
    assert _units(result, "a") == pytest.approx(25)
    built = result.power_build
    assert len(built) == 1 and built[0]["period"] == "p1" and built[0]["energised_period"] == "p2"
    assert built[0]["facility_power_w"] == pytest.approx(15 * per_chip_w, rel=1e-6)
    assert result.scenarios[0]["power_build_capex"] == pytest.approx(15 * per_chip_w, rel=1e-6)  # 1 per W


def test_utilization_and_headroom_scale_the_chips_needed(plan_dict):
    plan_dict["options"][0].pop("supply")
    plan_dict["utilization"] = {"max_utilization_frac": 0.8, "peak_headroom_frac": 0.2, "source": "test"}
    result = plan_fleet(PlanSpec.model_validate(plan_dict))
    assert _units(result, "a") == pytest.approx(2500 * 1.2 / 80)  # 37.5 chips at 80 usable tokens/s


def test_regret_is_zero_for_the_worst_scenario_and_positive_where_the_plan_overbuys(plan_dict):
    _falling_price(plan_dict)
    plan_dict["scenarios"] = [
        {"name": "open", "probability": 0.5},
        {"name": "a-banned", "probability": 0.5, "unavailable": [{"options": ["a"], "from_period": "p2"}]},
    ]
    plan_dict["regret"] = True
    result = plan_fleet(PlanSpec.model_validate(plan_dict))
    regret = {row["scenario"]: row for row in result.regret}
    # The robust plan stocks 25 a in p1 (25,000 in both futures); knowing 'open', 10 a + 15 cheaper a cost 19,000.
    assert regret["a-banned"]["regret"] == pytest.approx(0, abs=1e-3)
    assert regret["open"]["regret"] == pytest.approx(6_000, rel=1e-6)
    assert any(note.startswith("expected regret 3,000") for note in result.notes)  # 0.5 x 6,000
    assert all(np.isfinite(row["foresight_cost"]) for row in result.regret)


def test_unknown_component_names_the_nearest(make_plan):
    with pytest.raises(Exception, match="hbm3"):
        make_plan(
            components=[{"name": "hbm3", "kind": "hbm", "unit": "stacks", "supply": 1, "source": "t"}],
            options=[
                {"name": "a", "price": 1, "server_share": 0, "bill_of_materials": {"hbm": "hbm-3", "hbm_stacks_per_chip": 1}},
                {"name": "b", "price": 1, "server_share": 0},
            ],
        )



def test_nre_reference_takes_the_sourced_headline_figure_for_the_node(plan_dict):
    plan, _ = _nre_plan(plan_dict, 0.0)
    plan["options"][1]["manufactured"]["nre"] = {"reference": "7nm", "software": 1e6, "source": "nre.yaml + test"}
    result = plan_fleet(PlanSpec.model_validate(plan))
    assert result.build_decisions == [{"chip": "n", "built": False, "nre": pytest.approx(271e6 + 1e6)}]


def test_nre_reference_must_name_a_known_node_class(plan_dict):
    plan, _ = _nre_plan(plan_dict, 0.0)
    plan["options"][1]["manufactured"]["nre"] = {"reference": "7-nm", "source": "test"}
    with pytest.raises(Exception, match="7nm"):
        PlanSpec.model_validate(plan)


def test_pd_pool_option_gets_capacity_under_its_pool_key_and_competes(plan_dict):
    from tokenfab.fleet.resources import parse_pool_key

    plan_dict["options"][0].pop("supply")
    plan_dict["options"].append(
        {"name": "pool", "pool": {"prefill_chip": "h200-sxm", "decode_chip": "h20", "decode_per_prefill": 2},
         "price": 2400, "server_share": 0}
    )
    asked = []

    def provider(chip, model, slo):
        from tokenfab.fleet import CapacityEstimate

        asked.append(chip)
        key = parse_pool_key(chip)
        assert key is not None and key.num_chips == 3
        return CapacityEstimate(300.0, 900.0, f"test pool {key.prefill_chip}+{key.decode_chip}")

    result = plan_fleet(PlanSpec.model_validate(plan_dict), capacity_provider=provider)
    assert asked == ["pd:h200-sxm+h20:2"]  # only the pair the table lacks, once
    # A pool unit serves 300 tokens/s for 2400 (800 per 100 tokens/s) and beats a (1000 per 100).
    assert _units(result, "pool") == pytest.approx(2500 / 300)
    assert _units(result, "a") == pytest.approx(0)


def test_pool_key_round_trips_and_rejects_other_names():
    from tokenfab.fleet.resources import PoolSpec, parse_pool_key

    pool = PoolSpec(prefill_chip="h200-sxm", decode_chip="ascend-910c", decode_per_prefill=1.5)
    assert parse_pool_key(pool.capacity_key) == pool
    assert parse_pool_key("h200-sxm") is None and parse_pool_key("pd:broken") is None


def test_two_stage_shadow_price_given_scenario_divides_out_its_probability(plan_dict):
    # Nothing can be bought in p1 (no HBM); in p2 scenario 'tight' has 30 stacks (5 a + 20 b, a stack
    # worth 1500 - 1000 = 500 there), 'ample' has plenty. Expected cost weighs 'tight' by 0.75.
    plan = _hbm_plan(plan_dict, 30)
    plan["periods"] = ["p1", "p2"]
    plan["models"][0]["tokens_per_s"] = {"p1": 0, "p2": 2500}
    plan["components"][0]["supply"] = {"p1": 0, "p2": 30}
    plan["plan_kind"] = "two-stage"
    plan["first_stage_periods"] = 1
    plan["scenarios"] = [
        {"name": "ample", "probability": 0.25, "component_supply_multiplier": {"hbm3": 100}},
        {"name": "tight", "probability": 0.75},
    ]
    result = plan_fleet(PlanSpec.model_validate(plan))
    tight = [p for p in result.shadow_prices if p["kind"] == "component" and p["scenario"] == "tight"]
    assert len(tight) == 1
    assert tight[0]["shadow_price"] == pytest.approx(-0.75 * 500, rel=1e-6)
    assert tight[0]["shadow_price_given_scenario"] == pytest.approx(-500, rel=1e-6)
