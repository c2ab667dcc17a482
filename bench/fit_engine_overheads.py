"""Fit, on measured serving runs, each engine's host time per iteration and each chip's kernel floor under
CUDA-graph replay (jointly: both lengthen a decode step), and write them as data.

    python bench/fit_engine_overheads.py [--grid-ms 0,0.25,0.5,1] [--floor-grid-us 3,4,5,6,8,10,12] [--write]
    python bench/fit_engine_overheads.py --frontend-only [--frontend-grid-ms 0,5,10,15,20] [--frontend-engines trtllm] [--write]
    python bench/fit_engine_overheads.py --delivery-only [--delivery-release trtllm:1.0] [--frontend-grid-ms 0,10,20]
        [--delivery-grid-us 0,40,80,120] [--write]

Rows: the aggregated fixed-concurrency runs of ../shared/calibration/e2e_aiconfigurator_silicon.csv that
bench/accuracy_serving.py expresses. They are split by a hash of the run's key: on the fit half, every
(floor, overhead) grid pair is simulated, and the per-chip floor (or none: the op-table floors) and per-engine
step overhead that together minimise the TPOT MAPE over all fit rows are chosen; the other half reports TTFT
and TPOT MAPE per chip and engine before (neither) and after. Why a floor: engines replay decode-only steps
as captured CUDA graphs, while the operator tables time kernels launched one by one with per-call host time
in their floors (tokenfab.execution.graph_replay). `--write` stores the fits with their provenance in
src/tokenfab/serving/engines/overheads.yaml (read by `tokenfab.serving.engines.engine_spec`) and
src/tokenfab/execution/graph_replay.yaml (read by every StepModel).

`--frontend-only` keeps the stored step overheads and floors and fits, per engine of `--frontend-engines`, the serial
front-end time per request (`EngineSpec.frontend_s`: one single-threaded stage every request passes before the engine
sees it, so requests sent together enter one after another, and a busy stage delays admission and the first token):
the grid value minimising the mean of TTFT and TPOT MAPE on the engine's fit-half rows under the fitted benchmark
clients (bench/data/serving_clients.yaml; by default the frameworks' clients with the campaigns' held slots, what a
campaign the tool never saw gets: a front end chosen under the campaigns' own clients fits those campaigns, and
scored 15 ms there, 25.2% -> 26.0% fit-half TRT-LLM TTFT under the framework client), held-out figures on the other half. Why TensorRT-LLM: trtllm-serve runs the
OpenAI server, the chat template and the tokenizer of every request in one Python process (tensorrt_llm/serve/
openai_server.py; NVIDIA/TensorRT-LLM PR #7515: "a single cpu thread is responsible for tokenization for every request"),
beside the per-response detokenisation and postprocessing under the same GIL (tech blog 8, "Support Stream Interval").
`--write` then updates only the `frontend_s` entries (and their provenance) of overheads.yaml.

`--delivery-only` fits, for one engine release (`--delivery-release ENGINE:MAJOR.MINOR`), the serial server process's
per-request front-end time and per-output-token streaming time jointly (`EngineSpec.frontend_s`,
`delivery_s_per_token`: one FIFO server that every request's front end and every streamed token pass,
`tokenfab.serving.delivery`), the grid pair minimising the mean of TTFT and TPOT MAPE on that release's fit-half runs,
held-out figures on the other half. `--write` stores the pair under `engines.<engine>.releases.<release>` with its
provenance (`provenance.delivery`): a release's server, not the engine's every release.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from accuracy_serving import _concurrency_job, concurrency_jobs, job_half
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.execution import graph_replay
from tokenfab.serving import engines

OUT = Path(engines.__file__).with_name("overheads.yaml")
SPLIT = "sha256 of the run key, even: fit half; odd: held out"
KEPT_FITS = ("frontend", "delivery")  # provenance of the fits a step-overhead refit leaves as they are



def _run(jobs: list[dict], overhead_s: dict[str, float], floor_s: dict[str, float | None]) -> list[dict]:
    floors = {c: f for c, f in floor_s.items() if f is not None}
    stored = engines.fitted_overheads()  # the front-end fits (--frontend-only) stay as stored
    engines.fitted_overheads = lambda: {e: {**stored.get(e, {}), "step_overhead_s": v} for e, v in overhead_s.items()}  # forked
    graph_replay.fitted_floors = lambda: floors
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(_concurrency_job, jobs, chunksize=4))


def _run_frontend(jobs: list[dict], frontend_s: dict[str, float]) -> list[dict]:
    """`jobs` under the stored step overheads and floors, with `frontend_s` (seconds per request) per engine."""
    stored = engines.fitted_overheads()
    fitted = {e: {**stored.get(e, {}), "frontend_s": v} for e, v in frontend_s.items()}
    engines.fitted_overheads = lambda: {**stored, **fitted}  # forked into workers
    try:
        with ProcessPoolExecutor(max_workers=2) as pool:
            return list(pool.map(_concurrency_job, jobs, chunksize=4))
    finally:
        engines.fitted_overheads = lambda: stored


def _release_of(job: dict) -> str | None:
    return engines.release_key(job["kwargs"].get("engine_version"))


def _run_release(jobs: list[dict], engine: str, release: str, fields: dict[str, float]) -> list[dict]:
    """`jobs` under the stored fits with `fields` fitted for `engine`'s `release` (seconds)."""
    stored = engines.fitted_overheads()
    row = {**stored.get(engine, {}), "releases": {**stored.get(engine, {}).get("releases", {}), release: fields}}
    engines.fitted_overheads = lambda: {**stored, engine: row}  # forked into workers
    try:
        with ProcessPoolExecutor(max_workers=2) as pool:
            return list(pool.map(_concurrency_job, jobs, chunksize=4))
    finally:
        engines.fitted_overheads = lambda: stored


def fit_delivery(jobs: list[dict], engine: str, release: str, fe_grid: list[float], tok_grid: list[float]) -> dict:
    """The (front end per request, delivery per token) grid pair scoring best on the release's fit-half runs, with
    every pair's fit-half score and held-out figures (before: neither, after: the choice)."""
    mine = [j for j in jobs if j["meta"]["framework"] == engine and _release_of(j) == release]
    fit, test = [j for j in mine if job_half(j) == 0], [j for j in mine if job_half(j) == 1]
    scores = {}
    for fe, tok in itertools.product(fe_grid, tok_grid):
        scores[(fe, tok)] = sc = _score(fit, _run_release(fit, engine, release, {"frontend_s": fe, "delivery_s_per_token": tok}))
        print(f"{engine} {release}: front end {fe * 1e3:g} ms, delivery {tok * 1e6:g} us/token: fit-half score "
              f"{sc * 100:.2f}%", flush=True)
    fe, tok = min(scores, key=scores.get)
    before = _run_release(test, engine, release, {})
    after = _run_release(test, engine, release, {"frontend_s": fe, "delivery_s_per_token": tok})
    row = {"frontend_s": fe, "delivery_s_per_token": tok, "fit_runs": len(fit),
           "fit_half_score": {f"{a * 1e3:g}ms/{b * 1e6:g}us": round(v, 4) for (a, b), v in scores.items()},
           **_held_out(test, before, after)}
    print(f"{engine} {release}: chosen front end {fe * 1e3:g} ms, delivery {tok * 1e6:g} us/token; {row}", flush=True)
    return row


def _write_delivery(engine: str, release: str, row: dict, fe_grid: list[float], tok_grid: list[float]) -> None:
    """Store one release's delivery fit in overheads.yaml, leaving every other fit as it is."""
    data = yaml.safe_load(OUT.read_text()) if OUT.exists() else {"provenance": {}, "engines": {}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    data["provenance"]["delivery"] = {
        "method": f"{engine} {release}: the serial server process's front-end time per request and streaming time per "
                  "output token (one FIFO server, tokenfab.serving.delivery), the grid pair minimising the mean of TTFT and "
                  "TPOT MAPE on the release's fit half of the aggregated fixed-concurrency rows (under the stored benchmark "
                  "clients, bench/data/serving_clients.yaml); held-out figures (before: neither) on the other half",
        "evidence": "H100 TensorRT-LLM 1.0.0rc3 Llama-3.1-8B at C >= 64 runs near 35 requests/s and 9,100-9,240 output "
                    "tokens/s whatever the TP (host-bound); trtllm-serve tokenises, detokenises and streams every "
                    "request's chunks in one Python process (tensorrt_llm/serve/openai_server.py; PR #7515)",
        "split": SPLIT, "frontend_grid_s": fe_grid, "delivery_grid_s": tok_grid, "commit": commit,
        "date": dt.date.today().isoformat(),
        "command": "python bench/fit_engine_overheads.py --delivery-only --delivery-release "
                   f"{engine}:{release} --frontend-grid-ms " + ",".join(f"{v * 1e3:g}" for v in fe_grid)
                   + " --delivery-grid-us " + ",".join(f"{v * 1e6:g}" for v in tok_grid) + " --write"}
    data["engines"].setdefault(engine, {}).setdefault("releases", {})[release] = row
    OUT.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {OUT}")


def _score(jobs: list[dict], results: list[dict]) -> float:
    """Mean of TTFT and TPOT MAPE: the client fit's score (bench/fit_serving_client.py)."""
    return float(np.mean([_mape(_errors(jobs, results, m)) for m in ("ttft_ms", "tpot_ms")]))


def fit_frontends(jobs: list[dict], names: list[str], grid: list[float]) -> dict[str, dict]:
    """Per engine of `names`: the grid front-end time scoring best on its fit-half rows, with fit-half scores of every
    grid value and held-out figures (before: 0, after: the choice)."""
    out = {}
    for e in names:
        mine = [j for j in jobs if j["meta"]["framework"] == e]
        fit, test = [j for j in mine if job_half(j) == 0], [j for j in mine if job_half(j) == 1]
        scores = {v: _score(fit, _run_frontend(fit, {e: v})) for v in grid}
        for v, sc in scores.items():
            print(f"{e} front end {v * 1e3:.1f} ms: fit-half score {sc * 100:.2f}%", flush=True)
        best = min(scores, key=scores.get)
        before, after = _run_frontend(test, {e: 0.0}), _run_frontend(test, {e: best})
        out[e] = {"frontend_s": best, "frontend_fit_half_score": {f"{v * 1e3:g}ms": round(sc, 4) for v, sc in scores.items()},
                  "frontend_fit_runs": len(fit), **{f"frontend_{k}": v for k, v in _held_out(test, before, after).items()}}
        print(f"{e}: front end {best * 1e3:.1f} ms; held-out {out[e]}", flush=True)
    return out


def _write_frontends(grid: list[float], report: dict[str, dict], clients: str) -> None:
    """Add the front-end fits to overheads.yaml, leaving its step-overhead fits as they are."""
    data = yaml.safe_load(OUT.read_text()) if OUT.exists() else {"provenance": {}, "engines": {}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    data["provenance"]["frontend"] = {
        "method": "per engine, the serial front-end time per request (frontend_s) from the grid minimising the mean of "
                  "TTFT and TPOT MAPE on the engine's fit half of the aggregated fixed-concurrency rows, under the stored "
                  f"step overheads, floors and benchmark clients ({clients} clients, the campaigns' held slots); held-out "
                  "figures (before: none) on the other half",
        "split": SPLIT, "grid_s": grid, "commit": commit, "date": dt.date.today().isoformat(),
        "command": "python bench/fit_engine_overheads.py --frontend-only --frontend-grid-ms "
                   + ",".join(f"{v * 1e3:g}" for v in grid) + " --frontend-engines " + ",".join(report)
                   + f" --frontend-clients {clients} --write"}
    for e, row in report.items():
        data["engines"].setdefault(e, {}).update(row)
    OUT.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {OUT}")


def _errors(jobs: list[dict], results: list[dict], metric: str, **where: str) -> list[float]:
    return [abs(r[metric] / j["measured"][metric][0] - 1.0) for j, r in zip(jobs, results)
            if not r["error"] and metric in j["measured"] and all(j["meta"][k] == v for k, v in where.items())]


def _mape(errs: list[float]) -> float:
    return float(np.mean(errs)) if errs else float("nan")


def _joint_best(cells: dict, chips: list[str], names: list[str], floors: list, grid: list[float]) -> tuple[dict, dict]:
    """Per-chip floor and per-engine overhead minimising the summed TPOT error over all fit rows;
    `cells[(chip, engine, floor, overhead)]` holds that cell's summed error."""
    best, best_sum = None, float("inf")
    for fl in itertools.product(floors, repeat=len(chips)):
        for ov in itertools.product(grid, repeat=len(names)):
            total = sum(cells.get((c, e, f, o), 0.0) for c, f in zip(chips, fl) for e, o in zip(names, ov))
            if total < best_sum:
                best, best_sum = (fl, ov), total
    return dict(zip(chips, best[0])), dict(zip(names, best[1]))


def _held_out(test: list[dict], before: list[dict], after: list[dict], **where: str) -> dict:
    row = {}
    for metric in ("tpot_ms", "ttft_ms"):
        b, a = _errors(test, before, metric, **where), _errors(test, after, metric, **where)
        row[f"held_out_{metric}_mape"] = {"before": round(_mape(b), 4), "after": round(_mape(a), 4), "rows": len(b)}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid-ms", default="0,0.25,0.5,1")
    ap.add_argument("--floor-grid-us", default="3,4,5,6,8,10,12")
    ap.add_argument("--frontend-only", action="store_true", help="fit only the front-end time per request (see above)")
    ap.add_argument("--frontend-grid-ms", default="0,5,10,15,20")
    ap.add_argument("--frontend-engines", default="trtllm")
    ap.add_argument("--frontend-clients", choices=("framework", "campaign"), default="framework",
                    help="fit under the frameworks' clients only (what a campaign the tool never saw gets; default) or "
                         "under the campaigns' own clients where they have one")
    ap.add_argument("--delivery-only", action="store_true", help="fit one release's server process (see above)")
    ap.add_argument("--delivery-release", default="trtllm:1.0")
    ap.add_argument("--delivery-grid-us", default="0,40,80,120")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.delivery_only:
        engine, release = args.delivery_release.split(":")
        fe_grid = [float(x) / 1e3 for x in args.frontend_grid_ms.split(",")]
        tok_grid = [float(x) / 1e6 for x in args.delivery_grid_us.split(",")]
        # under the clients the accuracy bench runs (bench/data/serving_clients.yaml, campaigns' own where fitted)
        jobs = [j for j in concurrency_jobs(shared_calibration_dir())[0] if not j["meta"].get("disaggregated")]
        row = fit_delivery(jobs, engine, release, fe_grid, tok_grid)
        if args.write:
            _write_delivery(engine, release, row, fe_grid, tok_grid)
        return
    if args.frontend_only:
        fe_grid = [float(x) / 1e3 for x in args.frontend_grid_ms.split(",")]
        own = {} if args.frontend_clients == "framework" else None  # {}: no campaign clients; held slots stay
        jobs = [j for j in concurrency_jobs(shared_calibration_dir(), campaign_clients=own)[0]
                if not j["meta"].get("disaggregated")]
        report = fit_frontends(jobs, args.frontend_engines.split(","), fe_grid)
        if args.write:
            _write_frontends(fe_grid, report, args.frontend_clients)
        return
    grid = [float(x) / 1e3 for x in args.grid_ms.split(",")]
    floors = [float(x) / 1e6 for x in args.floor_grid_us.split(",")] + [None]  # None: the op-table floors
    jobs = [j for j in concurrency_jobs(shared_calibration_dir())[0] if not j["meta"].get("disaggregated")]
    fit, test = [j for j in jobs if job_half(j) == 0], [j for j in jobs if job_half(j) == 1]
    names = sorted({j["meta"]["framework"] for j in jobs})
    chips = sorted({j["meta"]["device"] for j in jobs})
    cells = {}
    for f, o in itertools.product(floors, grid):
        res = _run(fit, {e: o for e in names}, {c: f for c in chips})
        for c, e in itertools.product(chips, names):
            cells[(c, e, f, o)] = sum(_errors(fit, res, "tpot_ms", device=c, framework=e))
        fit_mape = sum(cells[(c, e, f, o)] for c in chips for e in names) / len(_errors(fit, res, "tpot_ms"))
        print(f"floor {'none' if f is None else f'{f * 1e6:.0f} us'}, overhead {o * 1e3:.2f} ms: fit TPOT {fit_mape * 100:.1f}%",
              flush=True)
    best_floor, best_ovh = _joint_best(cells, chips, names, floors, grid)
    before = _run(test, {e: 0.0 for e in names}, {c: None for c in chips})
    after = _run(test, best_ovh, best_floor)
    report_e = {e: {"step_overhead_s": best_ovh[e], **_held_out(test, before, after, framework=e)} for e in names}
    report_c = {c: {"kernel_floor_s": best_floor[c], **{f"{e}_{k}": v for e in names
                                                        for k, v in _held_out(test, before, after, device=c, framework=e).items()
                                                        if v["rows"]}} for c in chips}
    for e, row in report_e.items():
        print(f"{e}: {row['step_overhead_s'] * 1e3:.2f} ms per step; held-out TPOT {row['held_out_tpot_ms_mape']}, "
              f"TTFT {row['held_out_ttft_ms_mape']}")
    for c, row in report_c.items():
        f = row["kernel_floor_s"]
        print(f"{c}: replay floor {'none' if f is None else f'{f * 1e6:.0f} us'}; " +
              "; ".join(f"{k}: {v}" for k, v in row.items() if k != "kernel_floor_s"))
    if args.write:
        _write(grid, floors, report_e, report_c)


def _write(grid: list[float], floors: list, report_e: dict, report_c: dict) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    prov = {"method": "jointly, the per-engine step overhead and per-chip CUDA-graph replay floor (or none) from the grids "
                      "minimising TPOT MAPE over the fit half of the aggregated fixed-concurrency rows of "
                      "shared/calibration/e2e_aiconfigurator_silicon.csv (NVIDIA aiconfigurator-core 0.12.0 silicon samples); "
                      "held-out figures (before: no overhead, op-table floors) on the other half",
            "split": SPLIT, "grid_s": grid, "floor_grid_s": [f for f in floors if f is not None], "commit": commit,
            "date": dt.date.today().isoformat(), "command": "python bench/fit_engine_overheads.py --write"}
    old = yaml.safe_load(OUT.read_text()) if OUT.exists() else {}
    for part in KEPT_FITS:  # keep the other fits of the file it replaces (front end, delivery)
        if old.get("provenance", {}).get(part):
            prov[part] = old["provenance"][part]
    for e, row in report_e.items():
        row.update({k: v for k, v in old.get("engines", {}).get(e, {}).items()
                    if k.startswith("frontend") or k in ("releases", "architectures")})
    OUT.write_text(yaml.safe_dump({"provenance": prov, "engines": report_e}, sort_keys=False))
    graph_replay.DATA_PATH.write_text("# Kernel floor of CUDA-graph replay per chip, written by bench/fit_engine_overheads.py; "
                                      "do not edit by hand.\n" + yaml.safe_dump({"provenance": prov, "chips": report_c},
                                                                                sort_keys=False))
    print(f"wrote {OUT} and {graph_replay.DATA_PATH}")


if __name__ == "__main__":
    main()
