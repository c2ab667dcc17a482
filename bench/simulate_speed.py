"""Serving-simulator speed: simulated requests per wall-second and peak memory, against vidur.

    python bench/simulate_speed.py [--sizes 1000,100000,1000000] [--vidur] [--vidur-sizes S4a,S4b]

Scenario (shared with ../shared/bench/peers/run_vidur.py S4): Llama-3(.1)-8B on one A100-SXM-80GB,
1024 prompt / 128 output tokens, at most 128 sequences per batch, Poisson arrivals at 11 req/s --
about 90% of the saturation throughput tokenfab predicts for this deployment (12.2 req/s offline),
i.e. a load near saturation (vidur's own A100 profile puts saturation slightly below it).
Each size runs in a fresh process so its peak RSS is its own. With --vidur, vidur 0.0.26 (installed
by ../shared/bench/peers/setup.sh into $PEERS_DIR, default /tmp/peers; VIDUR_DATA must point at a
folder with `profiling` -> shared/calibration/raw/vidur) runs the same scenario in the same
session, and the speed ratio and the difference of latency percentiles are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# max_num_seqs=128: the batch cap the peer harness gives vidur's vLLM scheduler (run_vidur.py)
SCENARIO = dict(model="llama-3.1-8b", hardware="a100-sxm", rate=11.0, input_len=1024, output_len=128, seed=0,
                max_num_seqs=128)

CHILD = """
import json, resource, sys, time
from tokenfab import api
kw = json.loads(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
r = api.simulate(**kw)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
s = r.summary
print(json.dumps({"requests": s["completed"], "wall_s": wall, "cpu_s": cpu, "sim_wall_s": s["sim_wall_s"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "ttft_p50_ms": s["ttft_s"]["p50"] * 1e3, "ttft_p99_ms": s["ttft_s"]["p99"] * 1e3,
                  "tpot_p50_ms": s["tpot_s"]["p50"] * 1e3, "tpot_p99_ms": s["tpot_s"]["p99"] * 1e3,
                  "e2e_p50_ms": s["e2e_s"]["p50"] * 1e3, "e2e_p99_ms": s["e2e_s"]["p99"] * 1e3,
                  "throughput_tokens_per_s": s["throughput_tokens_per_s"]}))
"""


def run_tokenfab(n: int) -> dict:
    kw = dict(SCENARIO, num_requests=n)
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(kw)], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["us_per_request"] = res["wall_s"] / n * 1e6
    res["requests_per_wall_s"] = n / res["wall_s"]
    res["requests_per_cpu_s"] = n / res["cpu_s"]  # this process's CPU time: steadier on a shared, loaded machine
    return res


def run_vidur(scenarios: str) -> list[dict]:
    peers = Path(os.environ.get("PEERS_DIR", "/tmp/peers"))
    python = peers / "vidur" / "bin" / "python"
    script = Path(__file__).resolve().parents[2] / "shared" / "bench" / "peers" / "run_vidur.py"
    if not python.exists() or not script.exists():
        raise SystemExit(f"vidur not installed at {python} (run ../shared/bench/peers/setup.sh) or {script} missing")
    env = {**os.environ, "REPEATS": "1", "PEERS_DIR": str(peers)}
    out = subprocess.run([str(python), str(script), "--only", scenarios, "--qps", str(SCENARIO["rate"])],
                         capture_output=True, text=True, env=env, timeout=7200)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def vidur_summary(records: list[dict]) -> dict[int, dict]:
    """Group vidur's JSON lines by the number of requests of the run."""
    by_n: dict[int, dict] = {}
    for rec in records:
        cfg = rec.get("config", "")
        if rec.get("scenario") != "S4" or "req" not in cfg:
            continue
        n = int(cfg.split(" req")[0].split()[-1])
        d = by_n.setdefault(n, {})
        d[rec["metric"]] = rec["value"]
        d["process_wall_s"] = rec["wall_s"]
    return by_n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--vidur", action="store_true", help="also run vidur on the same scenario")
    ap.add_argument("--vidur-sizes", default="S4a,S4b", help="S4a=1,000 S4b=10,000 S4c=100,000 requests")
    ap.add_argument("--json", type=Path, help="write the whole report to this file")
    args = ap.parse_args()
    report: dict = {"scenario": SCENARIO, "tokenfab": {}}
    for n in (int(x) for x in args.sizes.split(",")):
        report["tokenfab"][n] = run_tokenfab(n)
        print(json.dumps({"tokenfab": n, **report["tokenfab"][n]}), flush=True)
    if args.vidur:
        vid = vidur_summary(run_vidur(args.vidur_sizes))
        report["vidur"] = vid
        comparison = {}
        for n, v in vid.items():
            ours = report["tokenfab"].get(n) or run_tokenfab(n)
            run_s = v.get("simulate_run_wall") or v["process_wall_s"]
            comparison[n] = {
                "vidur_run_wall_s": run_s, "vidur_process_wall_s": v["process_wall_s"], "tokenfab_wall_s": ours["wall_s"],
                "speedup_vs_vidur_run": run_s / ours["wall_s"], "speedup_vs_vidur_process": v["process_wall_s"] / ours["wall_s"],
            }
            for ours_key, vid_key in (("ttft_p50_ms", "ttft_p50"), ("ttft_p99_ms", "ttft_p99"), ("tpot_p50_ms", "tpot_p50"),
                                      ("tpot_p99_ms", "tpot_p99"), ("e2e_p50_ms", "e2e_latency_p50"), ("e2e_p99_ms", "e2e_latency_p99")):
                if vid_key in v and v[vid_key]:
                    comparison[n][f"{vid_key}: tokenfab/vidur"] = ours[ours_key] / v[vid_key]
        report["comparison"] = comparison
        print(json.dumps({"comparison": comparison}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
