"""Fit, on the measured SGLang DeepSeek (MLA + MoE) serving runs, SGLang's host time per prompt-only iteration and
the benchmark client's output-length spread for those runs, and write them as data.

    python bench/fit_sglang_prefill.py [--grid-ms 0,50,100,150] [--variation 0,0.1] [--write]

Why: SGLang runs waiting prompts in an iteration of their own (prefill-first; enable_mixed_chunk off by default,
python/sglang/srt/managers/scheduler.py `get_next_batch_to_run`), and runs those extend batches eagerly: its CUDA
graphs cover decode batches only (cuda_graph_runner.py; piecewise graphs for extend are opt-in), so each prefill
iteration of DeepSeek's 61 layers pays the launch of every kernel from Python. The measured runs show it: on B200
TP 8 FP8 at 8192 input tokens, C = 16, 32, 64 and 128 each imply the same busy time per request beyond the decode
steps, (TTFT + OSL x TPOT - OSL x step) / C, about 0.45 s, against 0.16 s of modelled kernels. The output spread is
fitted with it because the two act together: with every output exactly OSL long, closed-loop clients return in
waves, a wave's prompts queue behind each other (TTFT too high) and no decode is ever paused by a later prompt
(TPOT too low); the dense-row client fit (bench/fit_serving_client.py, H100) cannot see waves, which cost little
where prefill is short.

Rows: the SGLang runs of bench/accuracy_moe_serving.py's concurrency jobs (aggregated and P/D), split by the hash
of the run key (`job_half`): every grid pair is simulated on the fit half and the pair minimising the mean of TTFT
and TPOT MAPE there is chosen; the other half reports both before (no overhead, the framework client) and after.
`--write` stores the overhead in src/tokenfab/serving/engines/overheads.yaml, `engines.sglang.architectures` (read by
`tokenfab.serving.engines.for_model` for the 'mla-moe' class) and the spread in bench/data/sglang_moe_client.yaml
(read by bench/accuracy_moe_serving.py for SGLang runs).
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

import accuracy_moe_serving as ams
from accuracy_serving import fitted_clients, job_half
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.serving import engines

ARCH = "mla-moe"
SPLIT = "sha256 of the run key, even: fit half; odd: held out"


def _jobs(variation: float) -> list[dict]:
    clients = {k: dict(v) for k, v in fitted_clients().items()}
    clients.setdefault("sglang", {})["output_variation_frac"] = variation
    jobs, _ = ams.concurrency_jobs(shared_calibration_dir(), clients=clients, sglang_client={})
    return [j for j in jobs if j["meta"]["framework"] == "sglang"]


def _run(jobs: list[dict], overhead_s: float) -> list[dict]:
    stored = engines.fitted_overheads()
    sglang = {**stored.get("sglang", {}), "architectures": {ARCH: {"prefill_overhead_s": overhead_s}}}
    engines.fitted_overheads = lambda: {**stored, "sglang": sglang}  # forked into the workers
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(ams._job, jobs, chunksize=2))


def _errors(jobs: list[dict], results: list[dict], metric: str) -> list[float]:
    return [res[metric] / j["measured"][metric][0] - 1 for j, res in zip(jobs, results)
            if metric in j["measured"] and not res.get("error") and metric in res]


def _scores(jobs: list[dict], results: list[dict]) -> dict[str, float]:
    out = {m: round(float(np.mean(np.abs(_errors(jobs, results, m)))), 4) for m in ("ttft_ms", "tpot_ms")}
    out["rows"] = len(_errors(jobs, results, "ttft_ms")) + len(_errors(jobs, results, "tpot_ms"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid-ms", default="0,50,100,150")
    ap.add_argument("--variation", default="0,0.1")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    grid = [float(x) / 1e3 for x in args.grid_ms.split(",")]
    spreads = [float(x) for x in args.variation.split(",")]
    cells = {}
    for v in spreads:
        fit = [j for j in _jobs(v) if job_half(j) == 0]
        for o in grid:
            s = _scores(fit, _run(fit, o))
            cells[(v, o)] = (s["ttft_ms"] + s["tpot_ms"]) / 2
            print(f"spread {v:.2f}, prefill overhead {o * 1e3:.0f} ms: fit half {s}", flush=True)
    best_v, best_o = min(cells, key=cells.get)
    base_v = fitted_clients().get("sglang", {}).get("output_variation_frac", 0.0)
    before_jobs = [j for j in _jobs(base_v) if job_half(j) == 1]
    after_jobs = [j for j in _jobs(best_v) if job_half(j) == 1]
    before, after = _scores(before_jobs, _run(before_jobs, 0.0)), _scores(after_jobs, _run(after_jobs, best_o))
    print(f"chosen: spread {best_v}, prefill overhead {best_o * 1e3:.0f} ms; held out before {before}, after {after}")
    if args.write:
        _write(grid, spreads, cells, best_v, best_o, before, after)


def _write(grid, spreads, cells, best_v, best_o, before, after) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    prov = {"method": "jointly, SGLang's prompt-only iteration host time for DeepSeek (MLA + MoE) and the benchmark "
                      "client's output spread on those runs, the grid pair minimising the mean of TTFT and TPOT MAPE on "
                      "the fit half of the SGLang runs of bench/accuracy_moe_serving.py (shared/calibration/"
                      "e2e_aiconfigurator_silicon.csv, NVIDIA aiconfigurator-core 0.12.0 silicon samples); held-out "
                      "figures (before: no overhead, the framework client) on the other half",
            "split": SPLIT, "grid_s": grid, "spread_grid": spreads,
            "fit_half_score": {f"{v}/{o * 1e3:.0f}ms": round(c, 4) for (v, o), c in cells.items()},
            "held_out_before": before, "held_out_after": after, "commit": commit,
            "date": dt.date.today().isoformat(), "command": "python bench/fit_sglang_prefill.py --write"}
    path = engines.OVERHEADS_PATH  # the one file of fitted host times: this fit's entry and provenance, the rest kept
    data = yaml.safe_load(path.read_text()) if path.exists() else {"provenance": {}, "engines": {}}
    data["provenance"]["prefill"] = prov
    data["engines"].setdefault("sglang", {}).setdefault("architectures", {})[ARCH] = {"prefill_overhead_s": best_o}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    ams.SGLANG_CLIENT_PATH.write_text(
        "# Written by bench/fit_sglang_prefill.py; do not edit by hand.\n"
        + yaml.safe_dump({"provenance": prov, "sglang": {"output_variation_frac": best_v}}, sort_keys=False))
    print(f"wrote {engines.OVERHEADS_PATH} and {ams.SGLANG_CLIENT_PATH}")


if __name__ == "__main__":
    main()
