"""Speed of `tokenfab search`: >= 1,000 configurations screened and the top 10 confirmed by
simulation, against simulating every candidate; the chosen one re-simulated with more requests and
another seed must meet the SLO.

    python bench/search_speed.py [--workers N] [--json]

Simulating every candidate is not run in full (it would take long, which is the point): a
random sample of feasible candidates is simulated with the same settings as the confirmation
runs, and its mean wall time per candidate is multiplied by the number of candidates. Infeasible
candidates (no KV room, SLO missed at batch 1) would cost a simulation each too, but cheaper
ones, so the extrapolation over feasible candidates only is also printed (the conservative ratio).
"""

from __future__ import annotations

import argparse
import json
import random
import time

from tokenfab import api

QUESTION = dict(
    model=["llama-3.1-70b", "qwen3-32b"], hardware=["h100-sxm", "h20", "ascend-910b", "npu-template", "h200-sxm"],
    rate=12.0, input_len=2048, output_len=256, input_dist="uniform:1024,3072", output_dist="uniform:128,384",
    slo_ttft_ms=2000, slo_tpot_ms=50, tp=[1, 2, 4, 8], max_num_seqs=[32, 64, 128, 256, 512],
    max_batched_tokens=[2048, 4096, 8192, 16384], weight_dtype=["native", "fp8"], kv_dtype=["native", "fp8"],
    max_devices=128, top=10, num_requests=1000,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sample", type=int, default=30, help="candidates simulated to time the brute force")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    result = api.search(**QUESTION, workers=args.workers)
    wall = time.perf_counter() - t0
    d = result.to_dict()
    feasible = [c for c in d["candidates"]]
    rng = random.Random(0)
    sample = rng.sample(feasible, min(args.sample, len(feasible)))
    t1 = time.perf_counter()
    for c in sample:
        api.simulate(**c["simulate_args"])
    per_sim = (time.perf_counter() - t1) / max(1, len(sample))
    brute_all = per_sim * d["configs_evaluated"]
    brute_feasible = per_sim * len(feasible)

    best = d["best"]
    again_args = {**best["simulate_args"], "num_requests": 4 * QUESTION["num_requests"], "seed": 7}
    again = api.simulate(**again_args).summary
    ok = again["ttft_s"]["p99"] <= QUESTION["slo_ttft_ms"] / 1e3 and again["tpot_s"]["p99"] <= QUESTION["slo_tpot_ms"] / 1e3
    report = {
        "configs_evaluated": d["configs_evaluated"], "configs_feasible": len(feasible), "confirmed": QUESTION["top"],
        "search_wall_s": wall, "screen_wall_s": d["screen_wall_s"], "workers": args.workers,
        "simulate_s_per_candidate": per_sim, "simulated_sample": len(sample),
        "brute_force_all_s_extrapolated": brute_all, "brute_force_feasible_s_extrapolated": brute_feasible,
        "speedup_vs_all": brute_all / wall, "speedup_vs_feasible": brute_feasible / wall,
        "best": {k: best[k] for k in ("hardware", "model", "tp", "replicas", "max_num_seqs", "max_batched_tokens",
                                       "weight_dtype", "kv_dtype")},
        "recheck": {"num_requests": again_args["num_requests"], "seed": 7, "ttft_p99_s": again["ttft_s"]["p99"],
                    "tpot_p99_s": again["tpot_s"]["p99"], "meets_slo": ok},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"screened {d['configs_evaluated']} configurations ({len(feasible)} feasible), confirmed {QUESTION['top']} "
          f"by simulation: {wall:.1f} s ({args.workers} worker(s); screen {d['screen_wall_s']:.1f} s)")
    print(f"simulating every candidate instead: ~{brute_all:.0f} s ({per_sim * 1e3:.0f} ms each, measured on {len(sample)}, "
          f"extrapolated) -> {brute_all / wall:.1f}x; over feasible candidates only ~{brute_feasible:.0f} s -> "
          f"{brute_feasible / wall:.1f}x")
    print(f"best: {report['best']}")
    print(f"re-simulated with {again_args['num_requests']} requests, seed 7: TTFT p99 {again['ttft_s']['p99'] * 1e3:.0f} ms, "
          f"TPOT p99 {again['tpot_s']['p99'] * 1e3:.1f} ms -> {'meets' if ok else 'MISSES'} the SLO")


if __name__ == "__main__":
    main()
