"""Fleet-plan report: table rows for the CLI and a self-contained HTML file with plots.

The HTML embeds its PNG plots (base64), so one file can be mailed or attached to a
review without a directory of images. matplotlib is an optional extra (`tokenfab[plot]`)
and is imported only when a report is written.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from tokenfab.fleet.result import PlanResult
from tokenfab.table_io import HTML_SUFFIXES, check_output_path, write_text
from tokenfab.report.plotting import pyplot

MAX_SCENARIO_PANELS = 6
"""Fleet-mix small multiples shown; further scenarios are listed in tables only."""


def plan_table_rows(result: PlanResult) -> list[dict[str, Any]]:
    """The purchase plan as rows for a rich table: period, chip, scenario, units, capex."""
    return [
        {
            "period": row["period"],
            "chip": row["chip"],
            "scenario": row["scenario"],
            "units": round(row["units"]),
            f"capex_{result.currency.lower()}": round(row["capex"]),
        }
        for row in result.by_period
    ]


def scenario_table_rows(result: PlanResult) -> list[dict[str, Any]]:
    """One row per scenario: probability, capex, running cost, total, unmet demand."""
    return [
        {
            "scenario": row["name"],
            "probability": round(row["probability"], 4),
            "capex": round(row["capex"]),
            "energy": round(row["energy_cost"]),
            "facility": round(row["facility_cost"]),
            "total": round(row["total_cost"]),
            "min_served_frac": round(min(row["min_served_frac"], 1e9), 4),
        }
        for row in result.scenarios
    ]


def _pyplot():
    return pyplot("the fleet plan report")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fleet_mix_png(plt, result: PlanResult) -> str:
    scenarios = [row["name"] for row in result.scenarios][:MAX_SCENARIO_PANELS]
    cols = min(3, len(scenarios))
    rows = -(-len(scenarios) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    installed = {(r["scenario"], r["period"], r["chip"]): r["installed_units"] for r in result.fleet}
    for k, scenario in enumerate(scenarios):
        ax = axes[k // cols][k % cols]
        bottom = [0.0] * len(result.periods)
        for chip in result.options:
            heights = [installed.get((scenario, p, chip), 0.0) for p in result.periods]
            ax.bar(result.periods, heights, bottom=bottom, label=chip)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_title(scenario, fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    for k in range(len(scenarios), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].set_ylabel("installed chips")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(6, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return _png(fig)


def _cost_breakdown_png(plt, result: PlanResult) -> str:
    names = [row["name"] for row in result.scenarios]
    parts = [("capex_counted", "capex"), ("energy_cost", "energy"), ("facility_cost", "facility")]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names)), 3.6))
    bottom = [0.0] * len(names)
    for key, label in parts:
        heights = [row[key] for row in result.scenarios]
        ax.bar(names, heights, bottom=bottom, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_ylabel(f"cost over the horizon ({result.currency})")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _scenario_comparison_png(plt, result: PlanResult) -> str:
    names = [row["name"] for row in result.scenarios]
    totals = [row["total_cost"] for row in result.scenarios]
    served = [min(row["min_served_frac"], 1.0) for row in result.scenarios]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names)), 3.6))
    ax.bar(names, totals, color="#4c72b0")
    ax.set_ylabel(f"total cost ({result.currency})")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    twin = ax.twinx()
    twin.plot(names, served, "o", color="#dd5555")
    twin.set_ylim(0, 1.05)
    twin.set_ylabel("lowest fraction of demand served", color="#dd5555")
    fig.tight_layout()
    return _png(fig)


def _table(rows: list[dict[str, Any]], limit: int = 200) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(k)))}</td>" for k in keys) + "</tr>" for row in rows[:limit]
    )
    more = f"<p>... {len(rows) - limit} more rows in the JSON output</p>" if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}img{max-width:100%}"
    ".bad{color:#b00}"
)


def render_plan_html(result: PlanResult) -> str:
    """The whole report as one HTML string (plots embedded)."""
    plt = _pyplot()
    figures = [
        ("Fleet mix over time (installed chips per scenario)", _fleet_mix_png(plt, result)),
        ("Cost breakdown per scenario", _cost_breakdown_png(plt, result)),
        ("Scenario comparison", _scenario_comparison_png(plt, result)),
    ]
    plt.close("all")
    summary = [
        {
            "status": result.status,
            "objective": result.objective,
            "meaning": result.objective_meaning,
            "total_capex": result.total_capex,
            "budget": result.budget,
            "currency": result.currency,
        }
    ]
    unmet = "".join(f"<li class='bad'>{html.escape(line)}</li>" for line in result.unmet_lines) or "<li>none</li>"
    binding = [
        {k: b.get(k) for k in ("constraint", "activity", "limit", "shadow_price", "unit")}
        for b in result.binding_constraints
    ]
    economics = [
        {
            k: row[k]
            for k in ("chip", "model", "tokens_per_s_per_chip", "capex", "total_per_year", "cost_per_million_tokens")
        }
        for row in result.unit_economics
    ]
    parts = [
        f"<h1>Fleet plan: {html.escape(result.name)}</h1>",
        _table(summary),
        "<h2>Unmet demand</h2>",
        f"<ul>{unmet}</ul>",
        *[
            f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'/>"
            for title, png in figures
        ],
        "<h2>Purchases</h2>",
        _table(plan_table_rows(result)),
        "<h2>Scenarios</h2>",
        _table(scenario_table_rows(result)),
        "<h2>Binding constraints and shadow prices</h2>",
        _table(binding),
        f"<p>{html.escape(result.stats.get('duals_note', ''))}</p>",
        *_resource_sections(result),
        "<h2>Unit economics (first period)</h2>",
        _table(economics),
        "<h2>In-house silicon (cost and yield per delivery period)</h2>",
        _table(result.silicon),
        "<h2>Notes</h2>",
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes) + "</ul>",
    ]
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(result.name)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def _resource_sections(result: PlanResult) -> list[str]:
    """Build-or-not, power build-out, component use against supply, and each scenario's regret."""
    parts = []
    if result.build_decisions:
        parts += ["<h2>Build or not (NRE)</h2>", _table(result.build_decisions)]
    if result.power_build:
        parts += ["<h2>Facility power built</h2>", _table(result.power_build)]
    tight = [row for row in result.component_use if row["supply"] and row["used"] >= 0.999 * row["supply"]]
    if result.component_use:
        parts += ["<h2>Components at their supply limit</h2>", _table(tight) if tight else "<p>none</p>"]
    if result.regret:
        keys = ("scenario", "probability", "plan_cost", "foresight_cost", "regret")
        rows = [{k: row[k] for k in keys} for row in result.regret]
        parts += [
            "<h2>Regret: each scenario against the plan that knew it in advance</h2>",
            _table(rows),
            "<p>regret = this plan's cost in the scenario (incl. unmet-demand penalty) minus the cost of the plan "
            "made knowing the scenario for certain: what hedging against the other scenarios costs there.</p>",
        ]
    return parts


def write_plan_report(result: PlanResult, path: str | Path) -> Path:
    """Write the HTML report to `path` and return it."""
    check_output_path(path, HTML_SUFFIXES, "report")
    return write_text(render_plan_html(result), path, HTML_SUFFIXES, "report")
