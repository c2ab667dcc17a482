"""Search report: a self-contained HTML page with the Pareto plot and the ranked candidates.

The plot (goodput per chip against tokens/s per user, every feasible candidate, the front
highlighted, the best marked) is a base64 PNG inside the page, so one file can be shared.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from tokenfab.errors import MissingDependencyError
from tokenfab.table_io import HTML_SUFFIXES, write_text


def describe(row: dict) -> str:
    """Short human name of a candidate: chip(s), layout, replicas."""
    if row.get("disaggregated"):
        return (f"P {row['prefill_replicas']}x {row['hardware']} tp{row['tp']} / "
                f"D {row['decode_replicas']}x {row['decode_hardware']} tp{row['decode_tp']}")
    layout = f"tp{row['tp']}" + (f" pp{row['pp']}" if row["pp"] > 1 else "") + (f" ep{row['ep']}" if row["ep"] > 1 else "")
    limits = f" seqs{row['max_num_seqs']} tok{row['max_batched_tokens']}"
    formats = "" if row["weight_dtype"] == row["dtype"] and row["kv_dtype"] == "native" else f" w:{row['weight_dtype']} kv:{row['kv_dtype']}"
    return f"{row['replicas']}x {row['hardware']} {layout}{limits}{formats}"


def _pareto_png(result: dict) -> str:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot", "the search report") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = result["candidates"]
    ax.scatter([c["predicted"]["tokens_per_s_per_user"] for c in pts],
               [c["predicted"]["goodput_tokens_per_s_per_chip"] for c in pts], s=12, alpha=0.4, label="candidates")
    front = sorted(result["pareto"], key=lambda c: c["predicted"]["tokens_per_s_per_user"])
    ax.plot([c["predicted"]["tokens_per_s_per_user"] for c in front],
            [c["predicted"]["goodput_tokens_per_s_per_chip"] for c in front], "o-", color="C3", label="Pareto front")
    if result.get("best"):
        b = result["best"]["predicted"]
        ax.scatter([b["tokens_per_s_per_user"]], [b["goodput_tokens_per_s_per_chip"]], marker="*", s=200, color="k",
                   label="best (confirmed)")
    ax.set_xlabel("tokens/s per user (1 / TPOT)")
    ax.set_ylabel("goodput tokens/s per chip")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return html.escape(str(v))


def render_search_html(result: dict, limit: int = 50) -> str:
    """The report page (rows: the top `limit` candidates by the objective)."""
    cols = ["goodput_tokens_per_s_per_chip", "goodput_tokens_per_s_per_w", "goodput_tokens_per_s_per_cny", "cost_cny",
            "num_devices", "ttft_s", "tpot_s"]
    head = "".join(f"<th>{c}</th>" for c in ["candidate", *cols, "simulated: meets SLO"])
    body = []
    for c in result["candidates"][:limit]:
        sim = c.get("simulated")
        ok = "-" if sim is None else ("yes" if sim["meets_slo"] else "no")
        body.append("<tr><td>" + html.escape(describe(c)) + "</td>"
                    + "".join(f"<td>{_fmt(c['predicted'].get(k))}</td>" for k in cols) + f"<td>{ok}</td></tr>")
    best = describe(result["best"]) if result.get("best") else "none"
    return ("<!doctype html><html><head><meta charset='utf-8'><title>tokenfab search</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>"
            f"</head><body><h1>tokenfab search</h1><p>{result['configs_evaluated']} configurations screened in "
            f"{result['search_wall_s']:.2f} s, objective {html.escape(result['objective'])}; best: {html.escape(best)}</p>"
            f"<img alt='Pareto front' src='data:image/png;base64,{_pareto_png(result)}'>"
            f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>")


def write_search_report(result: dict, path: str | Path) -> Path:
    """Write the HTML page atomically (one-line error for a bad path) and return its path."""
    return write_text(render_search_html(result), path, HTML_SUFFIXES, "report")
