"""`tokenfab search`: the best deployment for a traffic under an SLO."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tokenfab import api
from tokenfab.cli.format import ms, rate
from tokenfab.cli.main import app, emit_json, err, out


def _list(value: str | None, cast=str):
    return [cast(x) for x in value.split(",") if x] if value else None


class _Bar:
    """Progress of the screen on stderr (rich), shown for long searches only."""

    def __init__(self):
        self.bar = self.task = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None and total >= 200:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("screening"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} configs"),
                                TimeElapsedColumn(), transient=True, console=Console(stderr=True))
            self.task = self.bar.add_task("screen", total=total)
            self.bar.start()
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
            if done >= total:
                self.bar.stop()


@app.command()
def search(
    model: Annotated[str, typer.Option(help="Model(s), comma-separated.")] = "llama-3.1-8b",
    hardware: Annotated[str, typer.Option(help="Candidate chips, comma-separated (P/D pools may mix them).")] = "h100-sxm",
    rate_: Annotated[float | None, typer.Option("--rate", help="Open-loop arrival rate, requests/s.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Closed-loop clients.")] = None,
    trace: Annotated[str | None, typer.Option(help="Trace file (Azure .csv or Mooncake .jsonl).")] = None,
    input_len: Annotated[int, typer.Option(help="Mean prompt tokens.")] = 1024,
    output_len: Annotated[int, typer.Option(help="Mean output tokens.")] = 256,
    input_dist: Annotated[str | None, typer.Option(help="Prompt distribution for confirmation runs (as simulate).")] = None,
    output_dist: Annotated[str | None, typer.Option(help="Output distribution for confirmation runs.")] = None,
    slo_ttft_ms: Annotated[float, typer.Option(help="TTFT target, ms.")] = 2000.0,
    slo_tpot_ms: Annotated[float, typer.Option(help="TPOT target, ms.")] = 50.0,
    slo_percentile: Annotated[float, typer.Option(help="Percentile the targets apply to (50, 90, 99).")] = 99.0,
    max_devices: Annotated[int, typer.Option(help="Most devices in all.")] = 64,
    objective: Annotated[str, typer.Option(help="goodput-per-chip | goodput-per-cost | goodput-per-watt | min-cost.")] = "goodput-per-chip",
    budget_cny: Annotated[float | None, typer.Option(help="Most the accelerators may cost, CNY.")] = None,
    top: Annotated[int, typer.Option(help="Candidates confirmed by simulation.")] = 5,
    tp: Annotated[str, typer.Option(help="TP degrees to try.")] = "1,2,4,8",
    pp: Annotated[str, typer.Option(help="PP depths to try.")] = "1",
    ep: Annotated[str, typer.Option(help="EP degrees to try (MoE).")] = "1",
    weight_dtype: Annotated[str, typer.Option(help="Weight formats to try ('native' = compute format).")] = "native",
    kv_dtype: Annotated[str, typer.Option(help="KV formats to try ('native' = 16-bit).")] = "native",
    max_num_seqs: Annotated[str | None, typer.Option(help="Engine max sequences to try (default: each engine's).")] = None,
    max_batched_tokens: Annotated[str | None, typer.Option(help="Engine token budgets to try (default: each engine's).")] = None,
    engine: Annotated[str, typer.Option(help="Engines to try (vllm, sglang, trtllm); default vllm.")] = "vllm",
    disaggregated: Annotated[bool, typer.Option("--pd", help="Also try P/D disaggregation (pools may mix chips).")] = False,
    num_requests: Annotated[int, typer.Option(help="Requests per confirmation simulation.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the confirmation runs.")] = 0,
    workers: Annotated[int, typer.Option(help="Local processes for screening.")] = 1,
    ray: Annotated[str | None, typer.Option(help="Ray cluster address ('local' starts one); needs tokenfab[ray].")] = None,
    emit: Annotated[str | None, typer.Option(help="Deployment files for the best: vllm,sglang,trtllm,k8s.")] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Folder for --emit files.")] = None,
    report: Annotated[str | None, typer.Option(help="Write an HTML report with the Pareto plot.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Screen deployments with the step model, confirm the best by simulation, rank by the objective."""
    from tokenfab.errors import InvalidInputError
    from tokenfab.report.search_report import describe, write_search_report
    from tokenfab.search.emit import TARGETS, render, write_files

    targets = _list(emit)
    if targets and not out_dir:
        raise InvalidInputError("--emit needs --out DIR")
    if targets:
        render({"model": "x", "hardware": "h100-sxm", "tp": 1, "max_num_seqs": 1, "max_batched_tokens": 1,
                "dtype": "bf16", "replicas": 1}, [t for t in targets if t not in TARGETS] or [])  # bad names fail first
    result = api.search(
        model=_list(model), hardware=_list(hardware), rate=rate_, concurrency=concurrency, trace=trace,
        input_len=input_len, output_len=output_len, input_dist=input_dist, output_dist=output_dist,
        slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms, slo_percentile=slo_percentile, max_devices=max_devices,
        objective=objective, budget_cny=budget_cny, top=top, tp=_list(tp, int), pp=_list(pp, int), ep=_list(ep, int),
        weight_dtype=_list(weight_dtype), kv_dtype=_list(kv_dtype), max_num_seqs=_list(max_num_seqs, int),
        max_batched_tokens=_list(max_batched_tokens, int), engine=_list(engine), disaggregated=disaggregated,
        num_requests=num_requests, seed=seed, workers=workers, ray=ray, progress=None if as_json else _Bar())
    d = result.to_dict()
    if targets and d["best"] is not None:
        for p in write_files(d["best"], targets, out_dir):
            err.print(f"wrote {p}")
    if report:
        err.print(f"wrote {write_search_report(d, report)}")
    if as_json:
        emit_json(d)
        return
    t = Table(title=f"tokenfab search: {d['configs_evaluated']} configs in {d['search_wall_s']:.2f} s, objective {d['objective']}")
    for col in ("candidate", "tok/s/chip", "tok/s/W", "tok/s per 1k CNY", "devices", "TTFT", "TPOT", "simulated"):
        t.add_column(col)
    for c in d["candidates"][:15]:
        p, s = c["predicted"], c.get("simulated")
        cny = p["goodput_tokens_per_s_per_cny"]
        t.add_row(describe(c), f"{p['goodput_tokens_per_s_per_chip']:,.1f}", f"{p['goodput_tokens_per_s_per_w']:,.3f}",
                  "-" if cny is None else f"{cny * 1e3:,.3f}", str(p["num_devices"]), ms(p["ttft_s"]), ms(p["tpot_s"]),
                  "-" if s is None else f"{'meets' if s['meets_slo'] else 'misses'} SLO, {rate(s['goodput_tokens_per_s_per_chip'], 'tok/s/chip')}")
    out.print(t)
    if d["best"] is None:
        err.print("no candidate meets the SLO")
    else:
        out.print(f"best: {describe(d['best'])}  ({len(d['pareto'])} on the Pareto front)")
