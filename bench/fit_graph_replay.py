"""Fit each chip's kernel floor under CUDA-graph replay on measured serving runs, and write it as data.

    python bench/fit_graph_replay.py [--grid-us 1,2,3,4,5,6,8,10,12] [--write]

Why: engines replay decode-only iterations as captured CUDA graphs, while the operator tables time kernels
launched one by one, whose small-kernel floor includes per-call host time (tokenfab.execution.graph_replay).
Rows: the aggregated fixed-concurrency runs of ../shared/calibration/e2e_aiconfigurator_silicon.csv that
bench/accuracy_serving.py expresses, split as bench/fit_engine_overheads.py splits them (sha256 of the run
key). On the fit half, per chip (all engines together), the grid value minimising TPOT MAPE is chosen, or
no cap ("none", the op-table floors) when that is better; the other half reports TPOT and TTFT MAPE per
chip and engine before and after. `--write` stores the fit with its provenance in
src/tokenfab/execution/graph_replay.yaml, which every StepModel reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import yaml

from accuracy_serving import _concurrency_job, concurrency_jobs
from fit_engine_overheads import _half
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.execution import graph_replay

NONE = None  # grid value: keep the op-table floors


def _run(jobs: list[dict], floors: dict[str, float | None]) -> list[dict]:
    chosen = {c: f for c, f in floors.items() if f is not None}
    graph_replay.fitted_floors = lambda: chosen  # forked into the workers
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(_concurrency_job, jobs, chunksize=4))


def _mape(jobs: list[dict], results: list[dict], metric: str, **where: str) -> tuple[float, int]:
    errs = [abs(r[metric] / j["measured"][metric][0] - 1.0) for j, r in zip(jobs, results)
            if not r["error"] and metric in j["measured"] and all(j["meta"][k] == v for k, v in where.items())]
    return (float(np.mean(errs)) if errs else float("nan")), len(errs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid-us", default="1,2,3,4,5,6,8,10,12")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    grid = [float(x) / 1e6 for x in args.grid_us.split(",")] + [NONE]
    jobs = [j for j in concurrency_jobs(shared_calibration_dir())[0] if not j["meta"].get("disaggregated")]
    fit, test = [j for j in jobs if _half(j) == 0], [j for j in jobs if _half(j) == 1]
    chips = sorted({j["meta"]["device"] for j in jobs})
    scores = {}
    for g in grid:
        res = _run(fit, {c: g for c in chips})
        for c in chips:
            scores[(c, g)] = _mape(fit, res, "tpot_ms", device=c)[0]
        label = "none" if g is None else f"{g * 1e6:.1f} us"
        print(f"floor {label}: " + ", ".join(f"{c} TPOT {scores[(c, g)] * 100:.1f}%" for c in chips), flush=True)
    best = {c: min(grid, key=lambda g, c=c: scores[(c, g)]) for c in chips}
    before, after = _run(test, {c: None for c in chips}), _run(test, best)
    report = {}
    for c in chips:
        row: dict = {"kernel_floor_s": best[c], "fit_tpot_mape": round(scores[(c, best[c])], 4),
                     "fit_tpot_mape_op_table_floors": round(scores[(c, None)], 4)}
        for fw in sorted({j["meta"]["framework"] for j in test if j["meta"]["device"] == c}):
            for metric in ("tpot_ms", "ttft_ms"):
                (b, n), (a, _) = _mape(test, before, metric, device=c, framework=fw), _mape(test, after, metric, device=c, framework=fw)
                row[f"held_out_{fw}_{metric}_mape"] = {"before": round(b, 4), "after": round(a, 4), "rows": n}
        report[c] = row
        label = "none (op-table floors)" if best[c] is None else f"{best[c] * 1e6:.1f} us"
        print(f"{c}: floor {label}; held-out " + "; ".join(
            f"{k[9:-5]} {v['before'] * 100:.1f}% -> {v['after'] * 100:.1f}% ({v['rows']})"
            for k, v in row.items() if k.startswith("held_out_")))
    if args.write:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        data = {"provenance": {
            "method": "per chip, the grid value (or none: the op-table floors) minimising TPOT MAPE over all engines on the "
                      "fit half (sha256 of the run key, even) of the aggregated fixed-concurrency rows of "
                      "shared/calibration/e2e_aiconfigurator_silicon.csv (NVIDIA aiconfigurator-core 0.12.0 silicon samples); "
                      "held-out figures on the odd half",
            "grid_s": [g for g in grid if g is not None], "commit": commit, "date": dt.date.today().isoformat(),
            "command": "python bench/fit_graph_replay.py --write"}, "chips": report}
        graph_replay.DATA_PATH.write_text("# Kernel floor of CUDA-graph replay per chip, written by bench/fit_graph_replay.py; "
                                          "do not edit by hand.\n" + yaml.safe_dump(data, sort_keys=False))
        print(f"wrote {graph_replay.DATA_PATH}")


if __name__ == "__main__":
    main()
