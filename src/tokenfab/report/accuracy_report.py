"""The accuracy report as one self-contained HTML file: how far tokenfab is from published measurements.

Input is one row frame per accuracy group (bench/accuracy.py runs the groups), each row a
measured figure and its prediction with at least `group, device, measured, predicted,
error_frac`, and optionally `vendor, op_family, engine, efficiency_source` and a band
`predicted_lo, predicted_hi`. Tables break the error down per group, chip, op family, engine
and vendor; log-log scatter plots show predicted vs measured (matplotlib, embedded as PNG);
band coverage is the fraction of measured values inside the band ('no bands yet' when a group
carries none). Tracking, not a gate: nothing here fails.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tokenfab.report.validation_report import _png, _pyplot
from tokenfab.table_io import HTML_SUFFIXES, write_text

NO_BANDS = "no bands yet"


@dataclass
class GroupRows:
    """One accuracy group's rows and what to break them down by."""

    name: str
    rows: pd.DataFrame
    note: str = ""
    skipped: list[str] = field(default_factory=list)


def _stats(g: pd.DataFrame) -> dict:
    ok = g.dropna(subset=["error_frac"])
    ape = ok["error_frac"].abs()
    out = {"num_rows": len(ok), "mape": float(ape.mean()) if len(ok) else np.nan,
           "median_ape": float(ape.median()) if len(ok) else np.nan,
           "p90_ape": float(ape.quantile(0.9)) if len(ok) else np.nan,
           "bias": float(ok["error_frac"].median()) if len(ok) else np.nan}
    out.update(band_coverage(ok))
    return out


def band_coverage(g: pd.DataFrame) -> dict:
    """Fraction of measured values inside [predicted_lo, predicted_hi] and the median relative width."""
    if "predicted_lo" not in g.columns or g["predicted_lo"].isna().all():
        return {"coverage": None, "median_width": None}
    b = g.dropna(subset=["predicted_lo", "predicted_hi"])
    inside = (b["measured"] >= b["predicted_lo"]) & (b["measured"] <= b["predicted_hi"])
    width = (b["predicted_hi"] - b["predicted_lo"]) / b["predicted"]
    return {"coverage": float(inside.mean()), "median_width": float(width.median())}


def breakdown(frames: list[GroupRows], by: list[str]) -> list[dict]:
    """Statistics per group and per value of the `by` columns (rows lacking a column are left out)."""
    out = []
    for gr in frames:
        rows = gr.rows
        if not set(by) <= set(rows.columns):
            continue
        rows = rows.dropna(subset=by)
        for key, g in rows.groupby(by, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            out.append({"group": gr.name, **dict(zip(by, map(str, key))), **_stats(g)})
    return out


def _pct(v, digits: int = 1) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v * 100:.{digits}f}%"


def _table(stats: list[dict], keys: list[str]) -> str:
    if not stats:
        return "<p>(no rows)</p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys) + (
        "<th>rows</th><th>MAPE</th><th>median</th><th>p90</th><th>bias</th><th>band coverage</th><th>median band width</th>")
    body = []
    for s in stats:
        cov = NO_BANDS if s["coverage"] is None else _pct(s["coverage"])
        width = "" if s["median_width"] is None else _pct(s["median_width"])
        body.append("<tr>" + "".join(f"<td>{html.escape(str(s[k]))}</td>" for k in keys)
                    + f"<td>{s['num_rows']}</td><td>{_pct(s['mape'])}</td><td>{_pct(s['median_ape'])}</td>"
                    f"<td>{_pct(s['p90_ape'])}</td><td>{_pct(s['bias'], 1) if s['bias'] == s['bias'] else ''}</td>"
                    f"<td>{cov}</td><td>{width}</td></tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def scatter_png(gr: GroupRows, color_by: str = "device") -> str:
    """Predicted vs measured on log-log axes, one colour per chip (or other column), y = x dashed."""
    plt = _pyplot()
    rows = gr.rows.dropna(subset=["measured", "predicted"])
    rows = rows[(rows["measured"] > 0) & (rows["predicted"] > 0)]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    col = color_by if color_by in rows.columns else "device"
    for key, g in rows.groupby(col, sort=True):
        ax.scatter(g["measured"], g["predicted"], s=5, alpha=0.5, label=str(key))
    if len(rows):
        lo = float(min(rows["measured"].min(), rows["predicted"].min()))
        hi = float(max(rows["measured"].max(), rows["predicted"].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.plot([lo, hi], [lo * 1.25, hi * 1.25], ":", color="grey", lw=0.8)
        ax.plot([lo, hi], [lo / 1.25, hi / 1.25], ":", color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="measured", ylabel="predicted", title=gr.name[:60])
    ax.legend(fontsize=7, markerscale=2)
    out = _png(fig)
    plt.close(fig)
    return out


def _scatter_section(frames: list[GroupRows]) -> str:
    cells = []
    for gr in frames:
        for name, g in gr.rows.groupby("group", sort=True):
            sub = GroupRows(str(name), g)
            cells.append(f'<figure><img src="data:image/png;base64,{scatter_png(sub)}"></figure>')
    return "<div class='grid'>" + "".join(cells) + "</div>"


def _band_section(band_report: dict | None, frames: list[GroupRows]) -> str:
    have = any("predicted_lo" in gr.rows.columns and gr.rows["predicted_lo"].notna().any() for gr in frames)
    parts = []
    if not have and not band_report:
        return f"<p><b>{NO_BANDS}</b>: no group carries <code>*_lo/_hi</code> band fields.</p>"
    if have:
        parts.append("<p>Coverage columns above: fraction of measured values inside the predicted band.</p>")
    for title, table in (band_report or {}).items():
        if isinstance(table, list) and table and isinstance(table[0], dict):
            keys = list(table[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(k)))}</td>" for k in keys) + "</tr>" for r in table)
            parts.append(f"<h3>{html.escape(str(title))}</h3><table><tr>"
                         + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + f"</tr>{body}</table>")
    return "".join(parts)


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v)


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin-bottom:1em}"
         "td,th{border:1px solid #ccc;padding:2px 7px;font-size:12px;text-align:right}td:first-child,th:first-child"
         "{text-align:left}.grid{display:flex;flex-wrap:wrap}figure{margin:4px}.meta{color:#555}")


def render_accuracy_html(frames: list[GroupRows], meta: dict, band_report: dict | None = None) -> str:
    """The whole report (module doc); `meta` holds commit, date, data directory and command."""
    meta_html = "".join(f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>" for k, v in meta.items())
    notes = "".join(f"<li><b>{html.escape(gr.name)}</b>: {html.escape(gr.note)} ({len(gr.rows)} rows, "
                    f"{len(gr.skipped)} skipped)</li>" for gr in frames)
    sections = [("By group", ["group"]), ("By chip", ["group", "device"]), ("By op family", ["group", "op_family"]),
                ("By engine", ["group", "engine"]), ("By vendor", ["group", "vendor"]),
                ("By efficiency source", ["group", "efficiency_source"])]
    body = "".join(f"<h2>{title}</h2>{_table(breakdown(frames, by), by)}" for title, by in sections)
    skipped = "".join(f"<li>{html.escape(s)}</li>" for gr in frames for s in gr.skipped[:40])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tokenfab accuracy</title>
<style>{STYLE}</style></head><body><h1>tokenfab accuracy against published measurements</h1>
<ul class="meta">{meta_html}</ul>
<p>Error = predicted / measured - 1 (positive: the model predicts too slow, or too little throughput for throughput
metrics read as measured). MAPE = mean |error|; bias = median error. Measurements: ../shared/calibration (see its
README for every source). This page tracks accuracy; the blocking check that predictions did not change is the
separate regression gate (tests/regression).</p>
<h2>Groups</h2><ul>{notes}</ul>{body}
<h2>Band coverage</h2>{_band_section(band_report, frames)}
<h2>Predicted vs measured (log-log; dashed y = x, dotted +/-25%)</h2>{_scatter_section(frames)}
<h2>Skipped rows (first 40 per group)</h2><ul>{skipped}</ul></body></html>"""


def _md_table(stats: list[dict], keys: list[str]) -> str:
    head = "| " + " | ".join(keys) + " | rows | MAPE | median | p90 | bias | band coverage |\n"
    head += "|" + "---|" * (len(keys) + 6) + "\n"
    body = "".join("| " + " | ".join(str(s[k]) for k in keys)
                   + f" | {s['num_rows']} | {_pct(s['mape'])} | {_pct(s['median_ape'])} | {_pct(s['p90_ape'])} | "
                   f"{_pct(s['bias'])} | {NO_BANDS if s['coverage'] is None else _pct(s['coverage'])} |\n" for s in stats)
    return head + body


def render_accuracy_markdown(frames: list[GroupRows], meta: dict) -> str:
    """A short summary of the same statistics (docs/accuracy.md): per group, and per chip for the vendors."""
    lines = ["# tokenfab accuracy snapshot", ""]
    lines += [f"- {k}: `{v}`" for k, v in meta.items()]
    lines += ["", "Error = predicted / measured - 1; MAPE = mean |error|; bias = median error. Full tables and "
              "scatter plots: [accuracy.html](accuracy.html). Tracking only; the blocking check is the "
              "prediction-regression gate (tests/regression).", "", "## Per group", "",
              _md_table(breakdown(frames, ["group"]), ["group"]), "## Per group and chip", "",
              _md_table(breakdown(frames, ["group", "device"]), ["group", "device"])]
    return "\n".join(lines) + "\n"


def write_accuracy_report(frames: list[GroupRows], meta: dict, path: str | Path, band_report: dict | None = None) -> Path:
    """Write the HTML page atomically (one-line error for a bad path) and return its path."""
    return write_text(render_accuracy_html(frames, meta, band_report), path, HTML_SUFFIXES, "report")
