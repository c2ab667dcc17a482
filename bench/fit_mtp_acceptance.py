"""Fit the per-token MTP acceptance of the InferenceMAX DeepSeek-R1 runs, on half of them.

    python bench/fit_mtp_acceptance.py [--grid 0.4,0.5,0.6,0.7,0.8,0.85,0.9] [--workers 2] [--write]

The MoE serving rows that InferenceMAX's multi-token-prediction scripts made (`accuracy_moe_serving.speculative_recipe`:
TensorRT-LLM release 1.2.0rc6.post3, DeepSeek-R1 on B200) run DeepSeek's MTP layer, whose acceptance on the sweeps'
random prompts (`benchmark_serving --random-range-ratio ... --use-chat-template`) no source states; the published
0.85 (DeepSeek-V3 report, sec. 5.4.3) is for natural text. Each run is simulated once per acceptance of the grid;
the one with the lowest TPOT MAPE on the fit half (sha256 of the run key, even: `accuracy_serving.job_half`, the
split every serving fit uses) is chosen, and the other half is scored under the published default and the choice.
`--write` stores the choice with provenance in bench/data/mtp_acceptance.yaml, which accuracy_moe_serving reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import yaml

from accuracy_moe_serving import MTP_ACCEPTANCE_PATH, MTP_FRAMEWORK, _job, concurrency_jobs
from accuracy_serving import job_half
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.execution.speculative import MTP_DEFAULTS

METRICS = ("tpot_ms", "ttft_ms")


def _errors(jobs: list[dict], acceptance: float, workers: int) -> list[dict[str, float]]:
    """Per job, {metric: |pred / measured - 1|} with the MTP layer accepting each drafted token at `acceptance`."""
    runs = [{**job, "kwargs": {**job["kwargs"], "spec_acceptance": acceptance}} for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_job, runs, chunksize=1))
    return [{m: abs(res[m] / value - 1.0) for m, (value, _) in job["measured"].items() if not res["error"] and m in METRICS}
            for job, res in zip(jobs, results)]


def _mape(errs: list[dict[str, float]], idx: list[int], metric: str) -> float:
    vals = [errs[i][metric] for i in idx if metric in errs[i]]
    return round(float(np.mean(vals)), 4) if vals else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="0.4,0.5,0.6,0.7,0.8,0.85,0.9")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    grid = [float(a) for a in args.grid.split(",")]
    published = MTP_DEFAULTS["deepseek_v3"].acceptance_frac
    if published not in grid:
        grid.append(published)
    jobs, _ = concurrency_jobs(shared_calibration_dir())
    jobs = [j for j in jobs if j["meta"].get("speculative")]
    half = [job_half(j) for j in jobs]
    fit = [i for i, h in enumerate(half) if h == 0]
    held = [i for i, h in enumerate(half) if h == 1]
    table = {a: _errors(jobs, a, args.workers) for a in grid}
    rows = {f"{a:g}": {f"fit_half_{m}_mape": _mape(table[a], fit, m) for m in METRICS} for a in grid}
    for a, row in rows.items():
        print(f"acceptance {a}: {row}", flush=True)
    best = min(grid, key=lambda a: _mape(table[a], fit, "tpot_ms"))
    held_out = {f"{m}_mape": {"published": _mape(table[published], held, m), "chosen": _mape(table[best], held, m),
                              "rows": len(held)} for m in METRICS}
    print(f"chosen acceptance {best:g} ({len(fit)} fit runs); held-out ({len(held)} runs): {held_out}")
    if args.write:
        _write(args, rows, best, held_out, len(fit), len(held))


def _write(args, rows: dict, best: float, held_out: dict, num_fit: int, num_held: int) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    data = {"provenance": {
        "method": "the per-token MTP acceptance minimising TPOT MAPE on the fit half (sha256 of the run key, even) of "
                  f"the aggregated fixed-concurrency runs of shared/calibration/e2e_aiconfigurator_silicon.csv made by "
                  f"InferenceMAX's DeepSeek-R1 MTP scripts ('{MTP_FRAMEWORK}', accuracy_moe_serving.speculative_recipe); "
                  "held-out figures on the odd half under the published default and the choice",
        "command": "python bench/fit_mtp_acceptance.py --grid " + args.grid + " --write",
        "commit": commit, "date": dt.date.today().isoformat(), "fit_runs": num_fit, "held_out_runs": num_held},
        "grid": rows, "held_out": held_out, "acceptance_frac": best}
    MTP_ACCEPTANCE_PATH.write_text("# MTP acceptance of the InferenceMAX DeepSeek-R1 runs, written by "
                                   "bench/fit_mtp_acceptance.py; do not edit by hand.\n" + yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {MTP_ACCEPTANCE_PATH}")


if __name__ == "__main__":
    main()
