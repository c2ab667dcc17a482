"""`predict` speed of two versions as paired chunks: the ratio with the load of a shared machine cancelled out.

    git archive <rev> src | tar -x -C /tmp/old
    python bench/ab_predict_pairs.py --old /tmp/old/src [--pairs 20] [--calls 200] [--to-dict]

bench/ab_speed.py alternates whole bench runs (tens of seconds each); on a machine shared by many processes the
load changes within that time, and the ratio of medians of three rounds swings by 30%. Here one warm worker
process per version (its `src` on PYTHONPATH) runs chunks of `--calls` full `api.predict` calls with varied shapes
(bench/predict_speed.py's: Llama-3.1-70B TP8 on H100, batch 1-256, input 128-8192, output 1-512; every call a new
prefill shape, the same seeded shapes for both), old and new alternating chunk by chunk, so each pair of chunks
runs a second or two apart under nearly the same load. Reported: the median and quartiles over the pairs of
(old CPU seconds / new CPU seconds), and each version's median calls per CPU second. Both workers first run 2,000
calls of other shapes, so the decode-side memos are as warm as in predict_speed.py's measure. `--to-dict` also turns
each result into its JSON dict (breakdown rows, largest batch, error bands). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

NEW_SRC = Path(__file__).resolve().parents[1] / "src"
SHAPES = dict(model="llama-3.1-70b", hardware="h100-sxm", tp=8)


def _shapes(rng: random.Random, n: int) -> list[tuple[int, int, int]]:
    return [(rng.randint(1, 256), rng.randint(128, 8192), rng.randint(1, 512)) for _ in range(n)]


def worker(to_dict: bool) -> None:
    """Read chunk sizes from stdin; for each, run that many new varied-shape calls and print [cpu_s, wall_s]."""
    from tokenfab import api

    for b, i, o in _shapes(random.Random(9), 2000):  # warm-up: other shapes
        api.predict(**SHAPES, batch=b, input_len=i, output_len=o)
    rng = random.Random(0)
    print("ready", flush=True)
    for line in sys.stdin:
        shapes = _shapes(rng, int(line))
        c0, t0 = time.process_time(), time.perf_counter()
        for b, i, o in shapes:
            result = api.predict(**SHAPES, batch=b, input_len=i, output_len=o)
            if to_dict:
                result.to_dict()
        print(json.dumps([time.process_time() - c0, time.perf_counter() - t0]), flush=True)


def _spawn(src: Path, to_dict: bool) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker"] + (["--to-dict"] if to_dict else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(src)})
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"the worker under {src} did not start")
    return proc


def _chunk(proc: subprocess.Popen, calls: int) -> float:
    proc.stdin.write(f"{calls}\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, help="the earlier version's src folder")
    ap.add_argument("--new", type=Path, default=NEW_SRC, help="this version's src folder (default: this tree)")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--calls", type=int, default=200, help="predict calls per chunk")
    ap.add_argument("--to-dict", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.to_dict)
        return
    if args.old is None:
        raise SystemExit("give the earlier version's src folder with --old")
    old, new = _spawn(args.old, args.to_dict), _spawn(args.new, args.to_dict)
    old_s, new_s = [], []
    for i in range(args.pairs):
        first, second = (old, new) if i % 2 == 0 else (new, old)  # alternate who goes first
        times = {id(first): _chunk(first, args.calls)}
        times[id(second)] = _chunk(second, args.calls)
        old_s.append(times[id(old)])
        new_s.append(times[id(new)])
    for proc in (old, new):
        proc.stdin.close()
        proc.wait()
    ratios = [a / b for a, b in zip(old_s, new_s)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    print(json.dumps({"pairs": args.pairs, "calls_per_chunk": args.calls, "to_dict": args.to_dict,
                      "new_speedup_median": statistics.median(ratios), "new_speedup_q1": quartiles[0],
                      "new_speedup_q3": quartiles[2],
                      "old_calls_per_cpu_s": args.calls / statistics.median(old_s),
                      "new_calls_per_cpu_s": args.calls / statistics.median(new_s)}, indent=2))


if __name__ == "__main__":
    main()
