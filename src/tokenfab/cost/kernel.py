"""The one formula every compute kernel's time comes from.

    t = launch_s + ( (F / (P * compute_eff * u))^p + (B / (BW * memory_eff))^p )^(1/p)

F, B: FLOPs and DRAM bytes of the kernel; P, BW: the chip's peak FLOP/s and bytes/s.
`compute_eff` and `memory_eff` in (0, 1] are the best fractions of peak the kernel
library reaches; `u = w / (w + w_half)` is how well `w` independent work units
(output tiles, heads x query blocks, ...) fill the chip; `p >= 1` blends the two
limits (p = 1: compute and memory never overlap, p -> inf: perfect overlap, the plain
roofline). `launch_s` is the fixed cost of a kernel (launch, prologue, tail).

A warm benchmark (one that re-runs a kernel on the same operands) may read its bytes from the
on-chip cache: the DRAM bandwidth is then multiplied by `cache_bw_factor` while the bytes fit in
`cache_capacity_frac` of the cache. With `cache_ramp_frac` w > 0 the change is a ramp instead of a
step: a working set of x times that capacity hits the cache for the fraction
h = clip((1 + w - x) / w, 0, 1) of its bytes, all of them up to the capacity and none beyond 1 + w
times it (a working set a little larger than the cache still finds most of its lines there: the
chain's buffers are not all live at once, and what one kernel evicts the next re-reads), and the
memory term is bytes / BW x (h / cache_bw_factor + 1 - h). Only the fused-MoE fits use it: L40S
CUTLASS layers at 1.0-1.1x the counted L2 ran from cache (+152% error under the step), and the ramp
took their held-out MAPE from 13.0% to 10.5% (fp8 11.4% -> 10.7%; bench/accuracy_moe.py), leave-one-chip-out
not worse (16.9% with it; 17.0% in a run without it, B200 then at 1.965 GHz; both with the clock-counted fixed
cost of `calibrate.moe_fit`).

Because every factor is <= 1 and launch_s >= 0 and the p-norm is >= the max, the time
is never below the roofline max(F/P, B/BW): physics is built into the form, and the
same function (vectorised with numpy) is used for prediction and for fitting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tokenfab.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class KernelParams:
    """Fitted efficiency parameters of one kernel class on one chip (see module doc)."""

    launch_s: float
    compute_eff: float
    memory_eff: float
    overlap_exp: float
    half_occupancy_per_unit: float  # w_half / compute units: work units per SM/core that half-fill the chip
    cache_bw_factor: float = 1.0  # on-chip cache bandwidth / DRAM bandwidth (warm benchmarks only)
    cache_capacity_frac: float = 0.0  # fraction of on-chip SRAM that holds a warm working set
    cache_ramp_frac: float = 0.0  # width of the cache-hit ramp beyond that capacity, as a fraction of it (0: a step)

    def __post_init__(self) -> None:
        for name in ("compute_eff", "memory_eff"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise InvalidInputError(f"efficiency {name}={value} must lie in (0, 1]")
        if self.launch_s < 0 or self.overlap_exp < 1.0 or self.half_occupancy_per_unit < 0:
            raise InvalidInputError(f"invalid kernel parameters {self}")
        if self.cache_bw_factor < 1.0 or not 0.0 <= self.cache_capacity_frac <= 1.0 or not 0.0 <= self.cache_ramp_frac < 1.0:
            raise InvalidInputError(f"invalid cache parameters {self}")

    def as_vector(self) -> np.ndarray:
        return np.array([self.launch_s, self.compute_eff, self.memory_eff, self.overlap_exp,
                         self.half_occupancy_per_unit, self.cache_bw_factor, self.cache_capacity_frac,
                         self.cache_ramp_frac])

    @classmethod
    def from_vector(cls, v: np.ndarray) -> KernelParams:
        return cls(*(float(x) for x in v))


def occupancy(work_units: float, half_units: float) -> float:
    """Fraction of the chip that `work_units` parallel units keep busy (1 when half_units = 0)."""
    if half_units <= 0.0:
        return 1.0
    return work_units / (work_units + half_units)


def kernel_time_s(
    flops: float, dram_bytes: float, peak_flop_per_s: float, bandwidth_bytes_per_s: float,
    params: KernelParams, work_units: float, compute_units: float, cache_bytes: float = 0.0,
    onchip_bytes: float = 0.0, onchip_bandwidth_bytes_per_s: float = 0.0,
) -> tuple[float, float]:
    """(time, roofline) of one kernel on a chip with `compute_units` SMs/cores.

    `cache_bytes` > 0 means a warm benchmark whose working set may stay in `cache_bytes` of
    on-chip memory (the fitted cache factor). `onchip_bytes` are bytes of data a model holds
    on chip across steps (pinned weights, a KV cache that fits), read at the on-chip bandwidth
    (see `tokenfab.cost.onchip`); without them the memory term is DRAM bytes / bandwidth.
    """
    bw = bandwidth_bytes_per_s
    if cache_bytes > 0.0 and params.cache_ramp_frac > 0.0:
        bw = float(_ramped_bandwidth(bw, dram_bytes, params.cache_capacity_frac * cache_bytes, params.cache_bw_factor,
                                     params.cache_ramp_frac))
    elif cache_bytes > 0.0 and dram_bytes <= params.cache_capacity_frac * cache_bytes:
        bw *= params.cache_bw_factor
    t_c = flops / peak_flop_per_s
    # onchip.memory_time_s, occupancy and max() written out (the same operations: every new operator shape comes here)
    t_m = dram_bytes / bw
    if onchip_bytes > 0.0:
        t_onchip = (dram_bytes + onchip_bytes) / onchip_bandwidth_bytes_per_s
        if t_onchip > t_m:
            t_m = t_onchip
    roofline = t_m if t_m > t_c else t_c
    half_units = params.half_occupancy_per_unit * compute_units
    u = 1.0 if half_units <= 0.0 else work_units / (work_units + half_units)
    a = t_c / (params.compute_eff * u) if t_c > 0 else 0.0
    b = t_m / params.memory_eff
    p = params.overlap_exp
    hi = b if b > a else a
    if hi <= 0.0:
        return params.launch_s, 0.0
    blended = hi * math.pow(math.pow(a / hi, p) + math.pow(b / hi, p), 1.0 / p)
    return params.launch_s + blended, roofline


def _ramped_bandwidth(bw, dram_bytes, capacity_bytes, factor, ramp):
    """Effective bandwidth of a warm kernel whose bytes hit the cache for the ramp's fraction (module doc);
    scalars or numpy arrays alike."""
    x = dram_bytes / np.maximum(capacity_bytes, 1e-30)
    hit = np.clip((1.0 + ramp - x) / ramp, 0.0, 1.0)
    return bw / (hit / factor + (1.0 - hit))


def kernel_time_array(
    flops: np.ndarray, dram_bytes: np.ndarray, peak: np.ndarray | float, bandwidth: np.ndarray | float,
    theta: np.ndarray, work_units: np.ndarray, compute_units: float | np.ndarray, cache_bytes: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Vectorised `kernel_time_s` for fitting; `theta` is `KernelParams.as_vector()` (7 entries: no ramp)."""
    launch, ce, me, p, occ, cache_factor, cache_frac = theta[:7]
    ramp = theta[7] if len(theta) > 7 else 0.0
    half_units = occ * compute_units
    if ramp > 0.0:
        capacity = cache_frac * np.asarray(cache_bytes)
        bw = np.where(np.asarray(cache_bytes) > 0,
                      _ramped_bandwidth(bandwidth, dram_bytes, capacity, cache_factor, ramp), bandwidth)
    else:
        warm = (np.asarray(cache_bytes) > 0) & (dram_bytes <= cache_frac * np.asarray(cache_bytes))
        bw = np.where(warm, bandwidth * cache_factor, bandwidth)
    t_c = flops / peak
    u = np.where(half_units > 0, work_units / (work_units + np.maximum(half_units, 1e-30)), 1.0)
    a = t_c / (ce * u)
    b = dram_bytes / bw / me
    hi = np.maximum(np.maximum(a, b), 1e-30)
    return launch + hi * ((a / hi) ** p + (b / hi) ** p) ** (1.0 / p)
