"""`tokenfab sweep`: chip designs around a base chip, scored by serving throughput and silicon cost."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tokenfab import api
from tokenfab.cli.main import app, emit_json, err, out

Opt = typer.Option


@app.command()
def sweep(
    base: Annotated[str, Opt("--base", help="Base chip (catalog name or YAML path).")] = "npu-template",
    vary: Annotated[list[str], Opt("--vary", help="FIELD=LO:HI:N (dotted path into the chip YAML, SI units), "
                                   "or process_node=KEY[,KEY]; repeat for more knobs.")] = [],  # noqa: B006
    model: Annotated[list[str], Opt("--model", "-m", help="Model(s) to score; repeat or comma-separate.")] = ["llama-3.1-8b"],  # noqa: B006
    slo_ttft_ms: Annotated[float, Opt("--slo-ttft-ms", help="TTFT target, ms.")] = 2000.0,
    slo_tpot_ms: Annotated[float, Opt("--slo-tpot-ms", help="TPOT target, ms.")] = 50.0,
    input_len: Annotated[int, Opt(help="Prompt tokens the capacity is estimated at.")] = 1024,
    output_len: Annotated[int, Opt(help="Output tokens the capacity is estimated at.")] = 256,
    sample: Annotated[str, Opt(help="grid (every combination of the --vary steps), sobol or lhs (seeded).")] = "grid",
    points: Annotated[int | None, Opt(help="Number of points for --sample sobol|lhs (powers of two keep Sobol balanced).")] = None,
    seed: Annotated[int, Opt(help="Seed of the sample.")] = 0,
    report: Annotated[str | None, Opt(help="Write an HTML report with plots to this path.")] = None,
    top: Annotated[int, Opt(help="Pareto rows shown in the table.")] = 15,
    workers: Annotated[int, Opt(help="Local processes the design points are split over.")] = 1,
    ray: Annotated[str | None, Opt(help="Ray cluster address ('local' starts one); needs tokenfab[ray].")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print one JSON object.")] = False,
) -> None:
    """Vary chip-spec fields and report tokens/s per chip and per watt, cost per good die and CNY per Mtok."""
    from tokenfab.report.sweep_report import point_rows, write_sweep_report

    result = api.sweep(base=base, vary=vary, model=model, slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms,
                       input_len=input_len, output_len=output_len, sample=sample, points=points, seed=seed, workers=workers, ray=ray)
    if report:
        err.print(f"wrote {write_sweep_report(result, report)}")
    if as_json:
        emit_json(result.to_dict())
        return
    paths = [r.path for r in result.ranges]
    t = Table(title=f"Pareto front of {len(result.points)} evaluations around {base} "
                    f"(USD per good die, CNY per Mtok; {result.sweep_wall_s:.1f} s)")
    rows = point_rows(result.pareto, paths, top)
    for col in (rows[0] if rows else {"(no point meets the SLO)": ""}):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
    out.print(t)
    for m, table in result.sensitivity.items():
        s = Table(title=f"{m}: sensitivity (Spearman rho / standardised regression coefficient)")
        s.add_column("output")
        for p in [r.path for r in result.ranges if not r.categorical]:
            s.add_column(p, justify="right")
        for output, knobs in table.items():
            s.add_row(output, *("-" if v["spearman"] is None else f"{v['spearman']:+.2f} / {v['src']:+.2f}"
                                for v in knobs.values()))
        out.print(s)
