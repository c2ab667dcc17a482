"""How fast is `tokenfab sweep`? 10,000 Sobol design points around a base chip for one model.

    python bench/sweep_speed.py [--points 10000] [--base h100-sxm] [--model llama-3.1-8b] [--check 5] [--workers 1]

Prints the wall and CPU time (this process and its worker processes) of the whole sweep (design
points, silicon cost, capacity at the SLO, Pareto front, sensitivities), the time per point, and
the ratio against the per-point slow
path (`capacity_at_slo`, i.e. plan's `capacity_on_chip`, timed on `--check` points, which are also
checked to be equal to float rounding: tp and batch identical, rates within 1e-12).
Target (issue 11): 10,000 points in < 60 s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

from tokenfab import api
from tokenfab.hardware.catalog import load_chip
from tokenfab.sweep.capacity import capacity_at_slo
from tokenfab.sweep.knobs import apply_knobs
from tokenfab.workload.hf_config import load_model

VARY = [
    "peak_flop_per_s.bf16=400e12:2000e12:2",
    "memory.bandwidth_bytes_per_s=1e12:8e12:2",
    "memory.capacity_bytes=40e9:192e9:2",
    "onchip_sram_bytes=10e6:500e6:2",
    "scale_up.bandwidth_bytes_per_s=50e9:900e9:2",
    "die_area_mm2=400:850:2",
    "power.tdp_w=300:1000:2",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--base", default="h100-sxm")
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--check", type=int, default=5, help="points re-evaluated by the slow path")
    ap.add_argument("--workers", type=int, default=1, help="local processes the points are split over")
    args = ap.parse_args()
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    result = api.sweep(base=args.base, vary=VARY, model=args.model, sample="sobol", points=args.points, seed=0,
                       workers=args.workers)
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    ok = sum(p.tokens_per_s_per_chip == p.tokens_per_s_per_chip for p in result.points)
    print(f"{len(result.points)} points ({ok} meet the SLO), {len(result.pareto)} on the Pareto front, "
          f"{args.workers} worker(s): {wall:.1f} s wall, {cpu:.1f} s CPU ({wall / len(result.points) * 1e3:.2f} ms "
          f"wall per point, {len(result.points) / wall:.0f} points/s)")
    base, model, slo = load_chip(args.base), load_model(args.model), result.slo
    t1 = time.perf_counter()
    equal = 0
    for p in result.points[: args.check]:
        slow = capacity_at_slo(apply_knobs(base, p.knobs), model, slo)
        equal += ((slow.tp, slow.batch) == (p.tp, p.batch)
                  and math.isclose(slow.tokens_per_s_per_chip, p.tokens_per_s_per_chip, rel_tol=1e-12))
    slow_per_point = (time.perf_counter() - t1) / max(1, args.check)
    print(f"slow path: {slow_per_point * 1e3:.0f} ms per point; batched path {slow_per_point * len(result.points) / wall:.0f}x "
          f"faster; {equal}/{args.check} checked points equal")


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children (the worker processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
