"""HTML report, CLI table rows, the public API surface, and the bundled example."""

from pathlib import Path

import pytest

import tokenfab.fleet
import tokenfab.silicon
from tokenfab.fleet import load_plan, plan_fleet
from tokenfab.hardware.catalog import chip_names
from tokenfab.report.fleet_report import plan_table_rows, scenario_table_rows, write_plan_report

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fleet_2026_2028.yaml"
EXAMPLE_CHIPS = {"h20", "h200-sxm", "ascend-910c", "npu-template"}


@pytest.mark.parametrize("package", [tokenfab.fleet, tokenfab.silicon])
def test_public_api_is_exactly_all(package):
    public = {name for name in vars(package) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(package, name)).__name__ == "module"}
    assert set(package.__all__) == public - modules


def test_report_has_three_plots_and_the_tables(make_plan, tmp_path):
    result = plan_fleet(make_plan(scenarios=[{"name": "open"}, {"name": "cut", "unavailable": [{"options": ["a"]}]}]))
    path = write_plan_report(result, tmp_path / "plan.html")
    text = path.read_text()
    assert text.count("data:image/png;base64,") == 3
    for title in ("Fleet mix over time", "Cost breakdown", "Scenario comparison", "Binding constraints"):
        assert title in text
    rows = plan_table_rows(result)
    assert rows and set(rows[0]) == {"period", "chip", "scenario", "units", "capex_usd"}
    assert [row["scenario"] for row in scenario_table_rows(result)] == ["open", "cut"]


def test_report_into_a_directory_is_an_input_error(make_plan, tmp_path):
    from tokenfab.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="directory"):
        write_plan_report(plan_fleet(make_plan()), tmp_path)


@pytest.mark.skipif(
    not set(chip_names()) >= EXAMPLE_CHIPS,
    reason=f"the hardware catalog does not have all of {sorted(EXAMPLE_CHIPS)} yet",
)
def test_bundled_example_responds_to_scenarios_components_and_budget():
    from tokenfab.api import predicted_capacity
    from tokenfab.fleet import CachedCapacityProvider

    spec = load_plan(EXAMPLE)
    provider = CachedCapacityProvider(predicted_capacity)
    result = plan_fleet(spec, capacity_provider=provider)
    # Demand is met in every scenario but those that cut a supply source (domestic HBM halved after imports stop;
    # H200 never licensed), where the plan reports the shortfall line by line instead of failing (MoE capacity
    # per chip comes from the one step model, with the engine's fitted host time per step).
    short = [n for n in result.notes if " short by " in n]
    cut = ("imports-cut-2027-hbm-halved", "h200-licence-refused")
    assert result.status == "optimal" or (short and all(any(c in n for c in cut) for n in short)), result.notes
    assert result.currency == "CNY" and result.budget == pytest.approx(95e9)
    assert result.total_capex <= result.budget * (1 + 1e-9)  # the budget binds: solver round-off
    assert {row["name"] for row in result.scenarios} >= {"licences-granted", "imports-cut-2027"}
    # 2026 is decided now; later periods adapt to the scenario.
    adapted = {row["scenario"] for row in result.by_period if row["scenario"] != "all"}
    assert {"h200-licence-refused", "imports-cut-2027"} <= adapted
    assert {row["scenario"] for row in result.by_period if row["period"] in ("2026H1", "2026H2")} == {"all"}
    assert [row["chip"] for row in result.build_decisions] == ["inhouse-npu"]
    assert {"component", "power"} <= {row["kind"] for row in result.shadow_prices}
    assert {row["scenario"] for row in result.regret} == {s.name for s in spec.scenarios}
    assert all(row["regret"] >= -1e-6 * row["foresight_cost"] for row in result.regret)
    # A budget below what the plan spends in its dearest scenario changes the plan.
    tighter = 0.8 * result.total_capex
    tight = plan_fleet(
        spec.model_copy(update={"regret": False, "budget": spec.budget.model_copy(update={"total": tighter})}),
        capacity_provider=provider,
    )
    assert tight.total_capex <= tighter * (1 + 1e-9)
    assert [row["units"] for row in tight.by_period] != pytest.approx([row["units"] for row in result.by_period])
    assert any(row["kind"] == "budget_total" for row in tight.shadow_prices)
