"""Fit how skewed the experts' popularity is in model steps, per model family, on half the aggregated MoE serving runs.

    python bench/fit_moe_routing.py [--skews 0,0.4,0.8,1.1,1.4] [--cache DIR] [--write]

A decode step of B tokens reads the weights of every expert at least one of its B x k picks chose; how many that is
depends on how unequally popular the experts are (`tokenfab.cost.moe_popularity`, 'zipf:S'; S = 0 is uniform
independent routing), which no operator table measures (ops_moe.csv routes round-robin or by a synthetic power law).
Rows: the aggregated fixed-concurrency MoE runs bench/accuracy_moe_serving.py expresses and scores (DeepSeek-V3/R1,
Qwen3-235B-A22B, GPT-OSS-120B on H100 and B200; P/D runs left out), under their fitted benchmark clients, split by
the sha256 of the run key as every serving fit splits them (`accuracy_serving.job_half`).

Every run is simulated once per skew of the grid (both halves: the held-out figures come from the same table). The
choice is made on the fit half only:
- the global skew: lowest TPOT MAPE over all fit-half runs;
- per model family (the Hugging Face model_type: routers are trained per family, e.g. DeepSeek-V3's auxiliary-loss-free
  balancing bias against Qwen3's and GPT-OSS's auxiliary-loss routers): the family's own lowest TPOT MAPE, kept only
  when the family has at least MIN_FAMILY_RUNS fit-half runs and its own skew beats the global one on them by at least
  MIN_GAIN (one point of MAPE); otherwise the family takes the global skew.
The held-out half is then scored under uniform routing, the global skew and the per-family choice. `--write` stores
the choice with provenance in src/tokenfab/execution/moe_routing.yaml, which the step model reads
(`tokenfab.execution.moe_routing`). `--cache DIR` keeps each skew's per-run results (JSON) so a rerun with more
skews simulates only the new ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from accuracy_moe_serving import _job, concurrency_jobs
from accuracy_serving import job_half
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.execution import moe_routing
from tokenfab.workload.hf_config import load_model

MIN_FAMILY_RUNS = 20
MIN_GAIN = 0.01
METRICS = ("tpot_ms", "ttft_ms")


def _set_routing(routing: str) -> None:
    """Worker initialiser: model steps in this process route by `routing` for every family."""
    moe_routing.OVERRIDE = routing


def _routing(skew: float) -> str:
    return f"zipf:{skew:g}" if skew > 0 else moe_routing.UNIFORM


def _errors(jobs: list[dict], skew: float, workers: int, cache: Path | None) -> list[dict[str, float]]:
    """Per job, {metric: |pred / measured - 1|} under skew `skew` (read from / written to `cache`)."""
    path = cache / f"skew_{skew:g}.json" if cache else None
    if path and path.exists():
        return json.loads(path.read_text())
    with ProcessPoolExecutor(max_workers=workers, initializer=_set_routing, initargs=(_routing(skew),)) as pool:
        results = list(pool.map(_job, jobs, chunksize=2))
    out = [{m: abs(res[m] / value - 1.0) for m, (value, _) in job["measured"].items() if not res["error"] and m in METRICS}
           for job, res in zip(jobs, results)]
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out))
    return out


def _mape(errs: list[dict[str, float]], idx: list[int], metric: str, pick=None) -> float:
    """MAPE over jobs `idx` of `metric`; `pick(i)` names the skew table of job i when `errs` maps skews to tables."""
    vals = [(errs[pick(i)] if pick else errs)[i].get(metric) for i in idx]
    vals = [v for v in vals if v is not None]
    return round(float(np.mean(vals)), 4) if vals else float("nan")


def choose(table: dict[float, list], fit_by_family: dict[str, list[int]], fit: list[int]) -> tuple[float, dict]:
    """(global skew, {family: (skew, why)}) from the fit-half TPOT MAPEs (module doc)."""
    best = min(table, key=lambda s: _mape(table[s], fit, "tpot_ms"))
    families = {}
    for family, idx in fit_by_family.items():
        own = min(table, key=lambda s: _mape(table[s], idx, "tpot_ms"))
        gain = _mape(table[best], idx, "tpot_ms") - _mape(table[own], idx, "tpot_ms")
        if len(idx) < MIN_FAMILY_RUNS:
            families[family] = (best, f"{len(idx)} fit runs (< {MIN_FAMILY_RUNS}): the global skew")
        elif gain < MIN_GAIN:
            families[family] = (best, f"own best {own:g} gains {gain:.4f} (< {MIN_GAIN}) on its fit runs: the global skew")
        else:
            families[family] = (own, f"own best on {len(idx)} fit runs, {gain:.4f} below the global skew's MAPE")
    return best, families


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skews", default="0,0.4,0.8,1.1,1.4")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    skews = [float(s) for s in args.skews.split(",")]
    jobs, _ = concurrency_jobs(shared_calibration_dir())
    jobs = [j for j in jobs if "prefill_replicas" not in j["meta"]["layout"]]
    family_of = {name: load_model(name).family for name in {j["kwargs"]["model"] for j in jobs}}
    fam = [family_of[j["kwargs"]["model"]] for j in jobs]
    half = [job_half(j) for j in jobs]
    fit = [i for i, h in enumerate(half) if h == 0]
    held = [i for i, h in enumerate(half) if h == 1]
    by_family = {f: ([i for i in fit if fam[i] == f], [i for i in held if fam[i] == f]) for f in sorted(set(fam))}
    table = {s: _errors(jobs, s, args.workers, args.cache) for s in skews}
    grid = {}
    for s in skews:
        grid[f"{s:g}"] = {"fit_half_tpot_ms_mape": _mape(table[s], fit, "tpot_ms"),
                          "fit_half_ttft_ms_mape": _mape(table[s], fit, "ttft_ms"),
                          "fit_half_tpot_ms_mape_by_family": {f: _mape(table[s], idx[0], "tpot_ms") for f, idx in by_family.items()}}
        print(f"zipf {s:g}: {grid[f'{s:g}']}", flush=True)
    best, families = choose(table, {f: idx[0] for f, idx in by_family.items()}, fit)
    chosen = {f: s for f, (s, _) in families.items()}
    pick_chosen = lambda i: chosen[fam[i]]  # noqa: E731
    held_out = {}
    for m in METRICS:
        held_out[f"{m}_mape"] = {"uniform": _mape(table[0.0], held, m) if 0.0 in table else None,
                                 "global": _mape(table[best], held, m), "chosen": _mape(table, held, m, pick_chosen),
                                 "rows": len(held)}
    held_out["tpot_ms_mape_by_family"] = {
        f: {"uniform": _mape(table[0.0], idx[1], "tpot_ms") if 0.0 in table else None,
            "global": _mape(table[best], idx[1], "tpot_ms"), "chosen": _mape(table[chosen[f]], idx[1], "tpot_ms"),
            "fit_runs": len(idx[0]), "held_out_runs": len(idx[1])} for f, idx in by_family.items()}
    print(f"global zipf {best:g}; per family {families}; held-out: {held_out}")
    if args.write:
        _write(args, skews, grid, best, families, held_out, len(fit), len(held))


def _write(args, skews, grid, best, families, held_out, num_fit, num_held) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    data = {"provenance": {
        "method": "the Zipf skew of expert popularity (cost.moe_popularity) minimising TPOT MAPE on the fit half "
                  "(sha256 of the run key, even) of the aggregated fixed-concurrency MoE runs of "
                  "shared/calibration/e2e_aiconfigurator_silicon.csv (NVIDIA aiconfigurator-core 0.12.0 silicon "
                  "samples) that bench/accuracy_moe_serving.py scores; globally and per model family (Hugging Face "
                  f"model_type), a family keeping its own skew only with >= {MIN_FAMILY_RUNS} fit runs and a fit-half "
                  f"gain >= {MIN_GAIN}; held-out figures on the odd half",
        "command": "python bench/fit_moe_routing.py --skews " + args.skews + " --write",
        "commit": commit, "date": dt.date.today().isoformat(), "fit_runs": num_fit, "held_out_runs": num_held},
        "grid": grid,
        "held_out": held_out,
        "zipf_skew": best,
        "families": {f: {"zipf_skew": s, "why": why} for f, (s, why) in families.items()}}
    moe_routing.DATA_PATH.write_text(
        "# Expert-popularity skew of model steps, written by bench/fit_moe_routing.py; do not edit by hand.\n"
        + yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {moe_routing.DATA_PATH}")


if __name__ == "__main__":
    main()
