"""Where a sweep's design points are evaluated: in this process, in local processes, or on Ray.

The points are split into contiguous chunks, one per worker, of the points ordered by the
memory totals their steady states depend on (`memory_order`), and the results put back in point
order: the batched path shares each batch's step shapes and states among the points of a chunk,
and points of similar memory ask for the same batches (the KV cache bounds their bisections
alike), so ordered chunks repeat less of each other's work than chunks of the sample order. Every chunk records the step model's kernels on the
sweep's first design point (`fast.fast_capacities`' `record_on`), so a point's figures do not
depend on the chunk it lands in: the outcome is the same whatever the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tokenfab.errors import InvalidInputError
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.spec import ChipSpec
from tokenfab.search.ray_map import ray_map
from tokenfab.sweep.evaluate import PointResult
from tokenfab.sweep.fast import evaluate_points
from tokenfab.sweep.knobs import apply_knobs
from tokenfab.workload.spec import ModelSpec


def evaluate_chunk(base: ChipSpec, record_on: ChipSpec, knob_sets: list[dict[str, Any]], model: ModelSpec,
                   slo: SLOSpec) -> list[PointResult]:
    """The points of one chunk (a module-level function so processes and Ray can run it): the chips are
    rebuilt from the base and the knobs, which is cheaper to ship than the chips themselves."""
    chips = [apply_knobs(base, k) for k in knob_sets]
    return evaluate_points(chips, knob_sets, model, slo, record_on=record_on)


def _chunks(items: list, n: int) -> list[list]:
    size = max(1, math.ceil(len(items) / n))
    return [items[i:i + size] for i in range(0, len(items), size)]


def evaluate_all(base: ChipSpec, chips: list[ChipSpec], knob_sets: list[dict[str, Any]], model: ModelSpec,
                 slo: SLOSpec, workers: int = 1, ray_address: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[PointResult]:
    """Every point for one model, in point order, computed here (workers=1), in `workers` processes, or on Ray."""
    if workers < 1:
        raise InvalidInputError(f"--workers must be >= 1 (got {workers})")
    if not chips:
        return []
    record_on = chips[0]
    if workers == 1 and not ray_address:
        return evaluate_points(chips, knob_sets, model, slo, progress, record_on=record_on)
    order = memory_order(chips)
    chunks = [[knob_sets[i] for i in idx] for idx in _chunks(order, workers)]
    done: list[PointResult] = []
    if ray_address:
        done = _evaluate_ray(base, record_on, chunks, model, slo, ray_address)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            n = len(chunks)
            for part in pool.map(evaluate_chunk, [base] * n, [record_on] * n, chunks, [model] * n, [slo] * n):
                done += part
                if progress is not None:
                    progress(len(done), len(chips))
    out: list[PointResult | None] = [None] * len(chips)
    for i, result in zip(order, done):
        out[i] = result
    if progress is not None and ray_address:
        progress(len(done), len(chips))
    return out


def memory_order(chips: list[ChipSpec]) -> list[int]:
    """The points' indices by their memory totals (device-reported, then CUDA's: all a steady state's engine
    limits and KV room read of the chip), ties in point order."""
    return sorted(range(len(chips)), key=lambda i: (chips[i].device_memory_bytes, chips[i].cuda_total_memory_bytes, i))


def _evaluate_ray(base: ChipSpec, record_on: ChipSpec, chunks: list[list], model: ModelSpec, slo: SLOSpec,
                  address: str) -> list[PointResult]:
    return ray_map(evaluate_chunk, [(base, record_on, chunk, model, slo) for chunk in chunks], address)
