"""Fit how skewed the experts' popularity is in model steps, on half the aggregated MoE serving runs.

    python bench/fit_moe_routing.py [--skews 0,0.4,0.8,1.2] [--write]

A decode step of B tokens reads the weights of every expert at least one of its B x k picks chose; how many that is
depends on how unequally popular the experts are (`tokenfab.cost.moe_popularity`, 'zipf:S'; S = 0 is uniform
independent routing), which no operator table measures (ops_moe.csv routes round-robin or by a synthetic power law).
Rows: the aggregated fixed-concurrency MoE runs bench/accuracy_moe_serving.py expresses (DeepSeek-V3/R1,
Qwen3-235B-A22B, GPT-OSS-120B on H100 and B200; P/D runs left out), under their fitted benchmark clients, split by
the sha256 of the run key as every serving fit splits them (`accuracy_serving.job_half`). Each skew of the grid is
simulated on the fit half; the one with the lowest TPOT MAPE is chosen and the held-out half is scored under it and
under uniform routing. `--write` stores the choice with provenance in src/tokenfab/execution/moe_routing.yaml, which
the step model reads (`tokenfab.execution.moe_routing`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import yaml

from accuracy_moe_serving import _job, concurrency_jobs
from accuracy_serving import job_half
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.execution import moe_routing


def _set_routing(routing: str) -> None:
    """Worker initialiser: model steps in this process route by `routing` (read when each LayerCoster is built)."""
    from tokenfab.execution import layers

    layers.MODEL_ROUTING = routing


def _errors(jobs: list[dict], skew: float, workers: int) -> dict[str, list[float]]:
    routing = f"zipf:{skew:g}" if skew > 0 else moe_routing.UNIFORM
    with ProcessPoolExecutor(max_workers=workers, initializer=_set_routing, initargs=(routing,)) as pool:
        results = list(pool.map(_job, jobs, chunksize=2))
    out: dict[str, list[float]] = {"tpot_ms": [], "ttft_ms": []}
    for job, res in zip(jobs, results):
        for metric, (value, _) in job["measured"].items():
            if not res["error"] and metric in out:
                out[metric].append(abs(res[metric] / value - 1.0))
    return out


def _mape(errs: dict[str, list[float]], metric: str) -> float:
    return round(float(np.mean(errs[metric])), 4) if errs[metric] else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skews", default="0,0.4,0.8,1.2")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    skews = [float(s) for s in args.skews.split(",")]
    jobs, _ = concurrency_jobs(shared_calibration_dir())
    jobs = [j for j in jobs if "prefill_replicas" not in j["meta"]["layout"]]
    fit = [j for j in jobs if job_half(j) == 0]
    held = [j for j in jobs if job_half(j) == 1]
    table = {}
    for skew in skews:
        errs = _errors(fit, skew, args.workers)
        table[skew] = {"fit_half_tpot_ms_mape": _mape(errs, "tpot_ms"), "fit_half_ttft_ms_mape": _mape(errs, "ttft_ms")}
        print(f"zipf {skew:g}: fit-half TPOT MAPE {table[skew]['fit_half_tpot_ms_mape']:.4f} "
              f"TTFT {table[skew]['fit_half_ttft_ms_mape']:.4f}", flush=True)
    best = min(skews, key=lambda s: table[s]["fit_half_tpot_ms_mape"])
    before, after = _errors(held, 0.0, args.workers), _errors(held, best, args.workers)
    held_out = {f"{m}_mape": {"uniform": _mape(before, m), "chosen": _mape(after, m), "rows": len(after[m])}
                for m in ("tpot_ms", "ttft_ms")}
    print(f"chosen zipf {best:g} ({len(fit)} fit runs); held-out ({len(held)} runs): {held_out}")
    if args.write:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        data = {"provenance": {
            "method": "the Zipf skew of expert popularity (cost.moe_popularity) minimising TPOT MAPE on the fit half "
                      "(sha256 of the run key, even) of the aggregated fixed-concurrency MoE runs of "
                      "shared/calibration/e2e_aiconfigurator_silicon.csv (NVIDIA aiconfigurator-core 0.12.0 silicon "
                      "samples) that bench/accuracy_moe_serving.py expresses; held-out figures on the odd half",
            "command": "python bench/fit_moe_routing.py --skews " + args.skews + " --write",
            "commit": commit, "date": dt.date.today().isoformat(), "fit_runs": len(fit), "held_out_runs": len(held)},
            "grid": {f"{s:g}": table[s] for s in skews},
            "held_out": held_out,
            "zipf_skew": best}
        moe_routing.DATA_PATH.write_text(
            "# Expert-popularity skew of model steps, written by bench/fit_moe_routing.py; do not edit by hand.\n"
            + yaml.safe_dump(data, sort_keys=False))
        print(f"wrote {moe_routing.DATA_PATH}")


if __name__ == "__main__":
    main()
