"""Fit each serving engine's host time per iteration on measured serving runs, and write it as data.

    python bench/fit_engine_overheads.py [--grid-ms 0,0.5,1,2,3] [--write]

Rows: the aggregated fixed-concurrency runs of ../shared/calibration/e2e_aiconfigurator_silicon.csv that
bench/accuracy_serving.py expresses. They are split by a hash of the run's key: the fit half chooses, per
engine, the step overhead (from the grid) that minimises the TPOT MAPE; the other half reports TTFT and
TPOT MAPE before (no overhead) and after. `--write` stores the fit with its provenance in
src/tokenfab/serving/engines/overheads.yaml, which `tokenfab.serving.engines.engine_spec` reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from accuracy_serving import _concurrency_job, concurrency_jobs
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.serving import engines

OUT = Path(engines.__file__).with_name("overheads.yaml")


def _half(job: dict) -> int:
    return int(hashlib.sha256(repr(job["meta"]["key"]).encode()).hexdigest(), 16) % 2


def _run(jobs: list[dict], overhead_s: dict[str, float]) -> list[dict]:
    engines.fitted_overheads = lambda: {e: {"step_overhead_s": v} for e, v in overhead_s.items()}  # forked into workers
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(_concurrency_job, jobs, chunksize=4))


def _mape(jobs: list[dict], results: list[dict], metric: str, engine: str) -> tuple[float, int]:
    errs = [abs(r[metric] / j["measured"][metric][0] - 1.0) for j, r in zip(jobs, results)
            if not r["error"] and j["meta"]["framework"] == engine and metric in j["measured"]]
    return (float(np.mean(errs)) if errs else float("nan")), len(errs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid-ms", default="0,0.5,1,2,3")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    grid = [float(x) / 1e3 for x in args.grid_ms.split(",")]
    jobs = [j for j in concurrency_jobs(shared_calibration_dir())[0] if not j["meta"].get("disaggregated")]
    fit, test = [j for j in jobs if _half(j) == 0], [j for j in jobs if _half(j) == 1]
    names = sorted({j["meta"]["framework"] for j in jobs})
    scores = {}
    for g in grid:
        res = _run(fit, {e: g for e in names})
        for e in names:
            scores[(e, g)] = _mape(fit, res, "tpot_ms", e)[0]
        print(f"overhead {g * 1e3:.1f} ms: " + ", ".join(f"{e} TPOT {scores[(e, g)] * 100:.1f}%" for e in names))
    best = {e: min(grid, key=lambda g, e=e: scores[(e, g)]) for e in names}
    before, after = _run(test, {e: 0.0 for e in names}), _run(test, best)
    report = {}
    for e in names:
        row = {"step_overhead_s": best[e]}
        for metric in ("tpot_ms", "ttft_ms"):
            (b, n), (a, _) = _mape(test, before, metric, e), _mape(test, after, metric, e)
            row[f"held_out_{metric}_mape_before"], row[f"held_out_{metric}_mape_after"] = round(b, 4), round(a, 4)
            row["held_out_rows"] = n
        report[e] = row
        print(f"{e}: {best[e] * 1e3:.1f} ms per step; held-out TPOT {row['held_out_tpot_ms_mape_before'] * 100:.1f}% -> "
              f"{row['held_out_tpot_ms_mape_after'] * 100:.1f}%, TTFT {row['held_out_ttft_ms_mape_before'] * 100:.1f}% -> "
              f"{row['held_out_ttft_ms_mape_after'] * 100:.1f}% ({row['held_out_rows']} rows)")
    if args.write:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        data = {"provenance": {
            "method": "per engine, the grid value minimising TPOT MAPE on the fit half (sha256 of the run key, even) of the "
                      "aggregated fixed-concurrency rows of shared/calibration/e2e_aiconfigurator_silicon.csv "
                      "(NVIDIA aiconfigurator-core 0.12.0 silicon samples); held-out figures on the odd half",
            "grid_s": grid, "commit": commit, "date": dt.date.today().isoformat(),
            "command": "python bench/fit_engine_overheads.py --write"}, "engines": report}
        OUT.write_text(yaml.safe_dump(data, sort_keys=False))
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
