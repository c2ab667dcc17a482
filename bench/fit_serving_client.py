"""Fit how the benchmark client of the measured serving runs behaved, per framework, and write it as data.

    python bench/fit_serving_client.py [--variation 0,0.005,0.01,0.02,0.05] [--latency-ms 0,5,10,20,40] [--write]

A closed-loop client at fixed concurrency C starts all C requests at t=0. Whether that first wave is in
the mean (aiperf / genai-perf count every request unless --warmup-request-count is given) and whether the
clients stay in step afterwards (exact output lengths keep every wave's prompts arriving together, so they
prefill together; lengths that vary, e.g. generations that stop at EOS because the client does not send
ignore_eos, spread the clients over the decode cycle) decide TTFT far more than the engine does. The
calibration rows do not say which client ran them, so per framework both are fitted on measured runs:
the warm-up (none, or one wave of C requests left out), the output-length variation (each output drawn
uniformly within +-f of the stated length; 0 = exact lengths) and the latency between client and engine
that no engine step accounts for (network and HTTP round trip, a front-end or router hop: it matters most
where prefills are short, at high TP). Rows: the fixed-concurrency runs of
../shared/calibration/e2e_aiconfigurator_silicon.csv that bench/accuracy_serving.py expresses, split by a
hash of the run key; the fit half chooses the setting minimising the mean of TTFT and TPOT MAPE, the other
half reports the figures. `--write` stores the fit with provenance in bench/data/serving_clients.yaml,
which bench/accuracy_serving.py reads.

Then, per measurement campaign (chip, framework release, source file of the rows' notes; `--min-runs` fit-half
runs at least) under its framework's fitted client: how many of the C sequence slots the deployment did not
give to requests (`--held-slots`, default 0 or 1; at most C - held run at once, so one request always waits
for a slot), the choice minimising the same score on the campaign's fit half. The client fit itself runs with
the campaigns' held slots of the file it replaces (run the fit twice after changing the grid).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import subprocess
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import yaml

from accuracy_serving import CLIENTS_PATH, _concurrency_job, apply_client, concurrency_jobs, fitted_campaigns
from tokenfab.calibrate.measurements import shared_calibration_dir

METRICS = ("ttft_ms", "tpot_ms")


def _half(job: dict) -> int:
    return int(hashlib.sha256(repr(job["meta"]["key"]).encode()).hexdigest(), 16) % 2


def _run(jobs: list[dict], client: dict, held: dict[str, int]) -> list[dict]:
    """Results of `jobs` under `client`, each with its campaign's held slots from `held`."""
    jobs = [{**j, "kwargs": apply_client(j["kwargs"], {**client, "held_slots": held.get(j["meta"]["campaign"], 0)})}
            for j in jobs]
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(_concurrency_job, jobs, chunksize=4))


def _mape(jobs: list[dict], results: list[dict], metric: str) -> tuple[float, int]:
    errs = [abs(r[metric] / j["measured"][metric][0] - 1.0) for j, r in zip(jobs, results)
            if not r["error"] and metric in j["measured"]]
    return (float(np.mean(errs)) if errs else float("nan")), len(errs)


def _score(jobs: list[dict], results: list[dict]) -> float:
    return float(np.mean([_mape(jobs, results, m)[0] for m in METRICS]))


EXACT = {"warmup_waves": 0, "output_variation_frac": 0.0, "request_latency_ms": 0.0}


def _fit_campaigns(jobs: list[dict], best: dict[str, dict], choices: list[int], min_runs: int) -> dict[str, dict]:
    """Per campaign with `min_runs` fit-half runs: the held slots (of `choices`) scoring best on its fit half under
    its framework's client `best`, with fit-half and held-out scores of every choice."""
    out = {}
    for name in sorted({j["meta"]["campaign"] for j in jobs}):
        mine = [j for j in jobs if j["meta"]["campaign"] == name]
        fit, test = [j for j in mine if _half(j) == 0], [j for j in mine if _half(j) == 1]
        if len(fit) < min_runs or not test:
            continue
        client = best[mine[0]["meta"]["framework"]]
        fit_s = {h: _score(fit, _run(fit, client, {name: h})) for h in choices}
        test_ttft = {h: _mape(test, _run(test, client, {name: h}), "ttft_ms")[0] for h in choices}
        h = min(fit_s, key=fit_s.get)
        out[name] = {"held_slots": h, "fit_runs": len(fit), "held_out_runs": len(test),
                     "fit_half_score": {k: round(v, 4) for k, v in fit_s.items()},
                     "held_out_ttft_ms_mape": {k: round(v, 4) for k, v in test_ttft.items()}}
        print(f"campaign {name}: held_slots {h}; fit-half score {fit_s}; held-out TTFT MAPE {test_ttft}")
    return out


def _framework_report(jobs: list[dict], best: dict, held: dict[str, int]) -> dict:
    """Held-out figures of one framework's jobs: the exact client (no held slots) against the fitted setting."""
    test = [j for j in jobs if _half(j) == 1]
    before, after = _run(test, EXACT, {}), _run(test, best, held)
    row = dict(best)
    for metric in METRICS:
        (b, n), (a, _) = _mape(test, before, metric), _mape(test, after, metric)
        row[f"held_out_{metric}_mape_exact_client"], row[f"held_out_{metric}_mape"] = round(b, 4), round(a, 4)
        row["held_out_rows"] = n
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variation", default="0,0.005,0.01,0.02,0.05")
    ap.add_argument("--latency-ms", default="0,5,10,20,40")
    ap.add_argument("--warmup-waves", default="0,1")
    ap.add_argument("--held-slots", default="0,1")
    ap.add_argument("--min-runs", type=int, default=10)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    grid = [{"warmup_waves": int(w), "output_variation_frac": float(v), "request_latency_ms": float(lat)}
            for w, v, lat in itertools.product(args.warmup_waves.split(","), args.variation.split(","), args.latency_ms.split(","))]
    jobs = [j for j in concurrency_jobs(shared_calibration_dir(), clients={}, campaigns={})[0]
            if not j["meta"].get("disaggregated")]
    names = sorted({j["meta"]["framework"] for j in jobs})
    held_before, best = fitted_campaigns(), {}
    for name in names:
        fit = [j for j in jobs if j["meta"]["framework"] == name and _half(j) == 0]
        scores = [(_score(fit, _run(fit, c, held_before)), i) for i, c in enumerate(grid)]
        for (s, i) in scores:
            print(f"{name} {grid[i]}: fit-half mean MAPE {s * 100:.1f}%")
        best[name] = grid[min(scores)[1]]
    campaigns = _fit_campaigns(jobs, best, [int(h) for h in args.held_slots.split(",")], args.min_runs)
    held = {k: v["held_slots"] for k, v in campaigns.items() if v["held_slots"]}
    report = {}
    for name in names:
        row = report[name] = _framework_report([j for j in jobs if j["meta"]["framework"] == name], best[name], held)
        print(f"{name}: {best[name]}; held-out TTFT {row['held_out_ttft_ms_mape_exact_client'] * 100:.1f}% -> "
              f"{row['held_out_ttft_ms_mape'] * 100:.1f}%, TPOT {row['held_out_tpot_ms_mape_exact_client'] * 100:.1f}% -> "
              f"{row['held_out_tpot_ms_mape'] * 100:.1f}% ({row['held_out_rows']} rows)")
    if args.write:
        _write(args, grid, report, campaigns)


def _write(args: argparse.Namespace, grid: list[dict], report: dict, campaigns: dict) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    data = {"provenance": {
        "method": "per framework, the grid setting minimising the mean of TTFT and TPOT MAPE on the fit half (sha256 of "
                  "the run key, even) of the aggregated fixed-concurrency rows of shared/calibration/"
                  "e2e_aiconfigurator_silicon.csv (NVIDIA aiconfigurator-core 0.12.0 silicon samples); held-out figures "
                  "on the odd half, against the exact client (no warm-up, exact lengths, no held slots). Then per "
                  "campaign (chip, framework release, notes' source_file) under its framework's client, the held slots "
                  "minimising the same score on the campaign's fit half",
        "grid": grid, "held_slots_choices": [int(h) for h in args.held_slots.split(",")], "min_runs": args.min_runs,
        "commit": commit, "date": dt.date.today().isoformat(),
        "command": "python bench/fit_serving_client.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "write") + " --write"},
        "frameworks": report, "campaigns": campaigns}
    CLIENTS_PATH.parent.mkdir(exist_ok=True)
    CLIENTS_PATH.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {CLIENTS_PATH}")


if __name__ == "__main__":
    main()
