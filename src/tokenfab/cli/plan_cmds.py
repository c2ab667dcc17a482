"""`tokenfab plan FILE`: a fleet purchase plan under supply scenarios and a budget."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tokenfab import api
from tokenfab.api.capacity import check_plan_models
from tokenfab.cli.main import app, emit_json, err, out
from tokenfab.table_io import HTML_SUFFIXES, check_output_path


@app.command()
def plan(
    file: Annotated[str, typer.Argument(help="Plan YAML (periods, demand, chip options, scenarios, budget).")],
    report: Annotated[str | None, typer.Option(help="Write an HTML report with plots to this path.")] = None,
    predictor: Annotated[bool, typer.Option(help="Capacity from tokenfab's predictor for pairs the file's capacity: section lacks.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Plan what to buy, when, to meet demand in every scenario within the budget (HiGHS LP/MILP)."""
    from tokenfab.fleet import load_plan, plan_fleet
    from tokenfab.report.fleet_report import plan_table_rows, scenario_table_rows, write_plan_report

    if report:
        check_output_path(report, HTML_SUFFIXES, "report")
    spec = load_plan(file)
    check_plan_models(spec, predictor)
    result = plan_fleet(spec, capacity_provider=api.predicted_capacity if predictor else None)
    if report:
        err.print(f"wrote {write_plan_report(result, report)}")
    if as_json:
        emit_json(result.to_dict())
        return
    d = result.to_dict()
    head = Table(title=f"{d['name']}: {d['plan_kind']} plan, {d['objective_kind']} -> {d['status']}", show_header=False)
    head.add_row("objective", f"{d['objective']:,.4g} {d['currency']} ({d['objective_meaning']})")
    budget = f"{d['budget']:,.4g}" if d["budget"] is not None else "none"
    head.add_row("capex", f"{d['total_capex']:,.4g} of budget {budget} {d['currency']}")
    out.print(head)
    _rows_table("purchases by period", plan_table_rows(result))
    _rows_table("scenarios", scenario_table_rows(result))
    _rows_table("build or not (NRE)", d["build_decisions"])
    _rows_table("facility power built", d["power_build"])
    _rows_table("shadow prices (largest first)", [
        {k: row.get(k) for k in ("constraint", "scenario", "shadow_price", "unit")} for row in d["shadow_prices"][:15]
    ])
    if d["regret"]:
        keys = ("scenario", "probability", "plan_cost", "foresight_cost", "regret")
        _rows_table("regret against the plan that knew the scenario", [{k: r[k] for k in keys} for r in d["regret"]])
    for line in result.unmet_lines:
        err.print(line, markup=False)


def _rows_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    t = Table(title=title)
    for col in rows[0]:
        t.add_column(str(col))
    for r in rows[:60]:
        t.add_row(*(f"{v:,.4g}" if isinstance(v, float) else str(v) for v in r.values()))
    out.print(t)
