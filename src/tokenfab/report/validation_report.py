"""The chip-test deliverable as HTML: where does the silicon differ from the model, and by how much.

Per-op-group MAPE and bias, the rows that miss by more than a threshold, a predicted-vs-measured
scatter and error-by-size plots (matplotlib, embedded as PNG so the file stands alone).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from tokenfab.calibrate.validate import group_stats
from tokenfab.table_io import HTML_SUFFIXES, check_output_path, write_text
from tokenfab.report.plotting import pyplot


def _pyplot():
    return pyplot("the validation report's plots")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _size(frame: pd.DataFrame) -> pd.Series:
    """A size axis for every op: FLOPs for GEMMs and attention, bytes for the rest."""
    flops = 2 * frame["m"] * frame["n"] * frame["k"]
    attn = frame["batch"] * frame["num_heads"] * frame["q_len"].fillna(1) * frame["kv_len"] * frame["head_dim"] * 4
    return flops.fillna(attn).fillna(frame["bytes"]).fillna(frame["message_bytes"])


def scatter_png(frame: pd.DataFrame) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for group, rows in frame.groupby("group"):
        ax.scatter(rows["time_s"] * 1e6, rows["predicted_s"] * 1e6, s=8, alpha=0.6, label=group)
    lo = float(np.nanmin(frame[["time_s", "predicted_s"]].to_numpy())) * 1e6
    hi = float(np.nanmax(frame[["time_s", "predicted_s"]].to_numpy())) * 1e6
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="measured (us)", ylabel="predicted (us)", title="predicted vs measured")
    ax.legend(fontsize=8)
    out = _png(fig)
    plt.close(fig)
    return out


def error_by_size_png(frame: pd.DataFrame) -> str:
    plt = _pyplot()
    groups = sorted(frame["group"].unique())
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
    size = _size(frame)
    for ax, group in zip(axes[0], groups):
        rows = frame["group"] == group
        ax.scatter(size[rows], frame.loc[rows, "error_frac"] * 100, s=8, alpha=0.6)
        ax.axhline(0, color="k", lw=1)
        ax.set(xscale="log", xlabel="size (FLOPs or bytes)", ylabel="error (%)", title=group)
    out = _png(fig)
    plt.close(fig)
    return out


def render_validation_html(frame: pd.DataFrame, chip: str, threshold: float) -> str:
    rows = frame.dropna(subset=["error_frac"])
    stats = [s.as_dict() for s in group_stats(rows, ["group"])]
    flagged = rows[rows["error_frac"].abs() > threshold]
    flagged = flagged.loc[flagged["error_frac"].abs().sort_values(ascending=False).index]
    cols = [c for c in ("op", "dtype", "m", "n", "k", "batch", "q_len", "kv_len", "num_heads", "num_kv_heads", "bytes",
                        "num_devices", "message_bytes", "time_s", "predicted_s", "error_frac") if c in rows.columns]
    stat_rows = "".join(
        f"<tr><td>{html.escape(s['group'])}</td><td>{s['num_rows']}</td><td>{s['mape']:.1%}</td><td>{s['median_ape']:.1%}</td>"
        f"<td>{s['p90_ape']:.1%}</td><td>{s['max_ape']:.0%}</td><td>{s['bias']:+.1%}</td></tr>" for s in stats)
    flag_head = "".join(f"<th>{c}</th>" for c in cols)
    flag_rows = "".join("<tr>" + "".join(f"<td>{_fmt(r[c])}</td>" for c in cols) + "</tr>" for _, r in flagged.head(200).iterrows())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tokenfab validation: {html.escape(chip)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}</style>
</head><body><h1>Predicted vs measured: {html.escape(chip)}</h1>
<p>{len(rows)} measured kernels; rows missing by more than {threshold:.0%} are flagged ({len(flagged)}).
Error = predicted / measured - 1 (positive: the model is too slow).</p>
<h2>By op group</h2><table><tr><th>group</th><th>rows</th><th>MAPE</th><th>median</th><th>p90</th><th>max</th><th>bias</th></tr>{stat_rows}</table>
<h2>Predicted vs measured</h2><img src="data:image/png;base64,{scatter_png(rows)}">
<h2>Error by size</h2><img src="data:image/png;base64,{error_by_size_png(rows)}">
<h2>Flagged rows (|error| &gt; {threshold:.0%}, worst first)</h2><table><tr>{flag_head}</tr>{flag_rows}</table>
</body></html>"""


def _fmt(v) -> str:
    if isinstance(v, float):
        if np.isnan(v):
            return ""
        return f"{v:.3g}"
    return html.escape(str(v))


def write_validation_report(frame: pd.DataFrame, chip: str, path: str | Path, threshold: float = 0.2) -> Path:
    check_output_path(path, HTML_SUFFIXES, "report")
    return write_text(render_validation_html(frame, chip, threshold), path, HTML_SUFFIXES, "report")
