"""Design-sweep report: table rows for the CLI and a self-contained HTML file with plots.

Plots per model: the trade-off cloud (tokens/s per chip against CNY per Mtok, coloured by
tokens/s per watt, Pareto points ringed), each output against each knob, and a sensitivity
bar chart (standardised regression coefficients). PNGs are embedded (base64) so the report is
one file; it is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from tokenfab.sweep.run import SweepResult
from tokenfab.report.plotting import pyplot
from tokenfab.table_io import HTML_SUFFIXES, write_text

_STYLE = "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}" \
         "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;text-align:right}img{max-width:100%}"


def point_rows(points: list, knob_paths: list[str], limit: int | None = None) -> list[dict[str, Any]]:
    """Points as flat rows (knobs first, then the outputs) for tables."""
    rows = []
    for p in points[:limit]:
        row = {k: p.knobs[k] for k in knob_paths}
        row.update(model=p.model, tp=p.tp, batch=p.batch, ttft_p99_s=p.ttft_s, tpot_p99_s=p.tpot_s,
                   tokens_per_s_per_chip=p.tokens_per_s_per_chip,
                   tokens_per_s_per_w=p.tokens_per_s_per_w, cost_per_good_die_usd=p.cost_per_good_die,
                   cost_per_mtok_cny=p.cost_per_mtok)
        rows.append(row)
    return rows


def _pyplot():
    return pyplot("the sweep report")


def _png(plt, fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _tradeoff_png(plt, points: list, front: list) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = [p for p in points if p.tokens_per_s_per_chip == p.tokens_per_s_per_chip]
    sc = ax.scatter([p.cost_per_mtok for p in ok], [p.tokens_per_s_per_chip for p in ok],
                    c=[p.tokens_per_s_per_w for p in ok], s=8, cmap="viridis")
    ax.scatter([p.cost_per_mtok for p in front], [p.tokens_per_s_per_chip for p in front], s=40,
               facecolors="none", edgecolors="red", label="Pareto front")
    fig.colorbar(sc, label="tokens/s per W")
    ax.set_xlabel("CNY per million tokens")
    ax.set_ylabel("tokens/s per chip at the SLO")
    ax.legend()
    return _png(plt, fig)


def _knob_png(plt, points: list, knob_paths: list[str]) -> str:
    outputs = ("tokens_per_s_per_chip", "tokens_per_s_per_w", "cost_per_mtok", "cost_per_good_die")
    fig, axes = plt.subplots(len(outputs), len(knob_paths), figsize=(3.2 * len(knob_paths), 2.4 * len(outputs)),
                             squeeze=False)
    for i, out in enumerate(outputs):
        for j, knob in enumerate(knob_paths):
            ax = axes[i][j]
            xs = [p.knobs[knob] for p in points]
            ax.scatter(xs, [getattr(p, out) for p in points], s=4)
            if i == len(outputs) - 1:
                ax.set_xlabel(knob, fontsize=8)
            if j == 0:
                ax.set_ylabel(out, fontsize=8)
            ax.tick_params(labelsize=7)
    return _png(plt, fig)


def _sensitivity_png(plt, table: dict[str, dict]) -> str:
    outputs = list(table)
    knobs = list(next(iter(table.values()))) if table else []
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(knobs) * len(outputs)))
    labels, values = [], []
    for out in outputs:
        for knob in knobs:
            labels.append(f"{out} <- {knob}")
            values.append(table[out][knob]["src"] or 0.0)
    ax.barh(range(len(values)), values, color=["tab:blue" if v >= 0 else "tab:red" for v in values])
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("standardised regression coefficient")
    return _png(plt, fig)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_sweep_html(result: SweepResult) -> str:
    plt = _pyplot()
    knob_paths = [r.path for r in result.ranges]
    numeric = [r.path for r in result.ranges if not r.categorical]
    slo = result.slo
    parts = [f"<h1>Design sweep around {html.escape(result.base)}</h1>",
             f"<p>{len(result.points)} evaluations ({result.sample}); SLO TTFT {slo.ttft_s * 1e3:g} ms, TPOT "
             f"{slo.tpot_s * 1e3:g} ms at {slo.input_tokens} in / {slo.output_tokens} out tokens; "
             f"{result.sweep_wall_s:.1f} s.</p>"]
    for model in result.models:
        points = [p for p in result.points if p.model == model]
        front = [p for p in result.pareto if p.model == model]
        parts.append(f"<h2>{html.escape(model)}</h2>")
        parts.append(f"<img alt='trade-off' src='data:image/png;base64,{_tradeoff_png(plt, points, front)}'/>")
        if numeric:
            parts.append(f"<img alt='knobs' src='data:image/png;base64,{_knob_png(plt, points, numeric)}'/>")
            parts.append(f"<img alt='sensitivity' src='data:image/png;base64,"
                         f"{_sensitivity_png(plt, result.sensitivity[model])}'/>")
        parts.append("<h3>Pareto front</h3>" + _table(point_rows(front, knob_paths)))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>sweep {html.escape(result.base)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")


def write_sweep_report(result: SweepResult, path: str | Path) -> Path:
    """Write the HTML page atomically (one-line error for a bad path) and return its path."""
    return write_text(render_sweep_html(result), path, HTML_SUFFIXES, "report")
