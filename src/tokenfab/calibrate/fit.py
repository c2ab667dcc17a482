"""Fit efficiency curves to measured kernel times.

Each kernel class (GEMM of one data-type kind, prefill or decode attention) is fitted
with the same formula the predictor uses (`cost.kernel`), so a fitted profile predicts
exactly what was fitted. The work of every measured kernel (FLOPs, DRAM bytes, work
units) comes from the same functions the estimators call (`gemm_work`, ...).

Least squares on log(time) (relative error, so small and large kernels count alike),
with a soft-L1 loss that keeps a few outliers (throttling, a slow kernel variant) from
dragging the curve, bounded parameters (efficiencies in (0, 1], p in [1, 20]), and a
few starting points to avoid local minima. Every fit reports its own residuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from tokenfab.cost.collectives import TREE_BUS_FACTOR, bus_factor, mesh_bandwidth, mesh_steps, steps, tree_steps
from tokenfab.cost.kernel import KernelParams, kernel_time_array
from tokenfab.cost.profile import CollectiveParams

# theta = [launch_s, compute_eff, memory_eff, overlap_exp, half_occupancy_per_unit, cache_bw_factor, cache_capacity_frac,
#          cache_ramp_frac]
LOWER = np.array([0.0, 0.02, 0.02, 1.0, 0.0, 1.0, 0.0, 0.0])
UPPER = np.array([2e-4, 1.0, 1.0, 20.0, 50.0, 4.0, 1.0, 0.5])
_STARTS = (
    np.array([5e-6, 0.8, 0.8, 2.0, 0.5, 1.2, 0.5, 0.1]),
    np.array([5e-6, 0.6, 0.85, 6.0, 0.05, 1.5, 0.3, 0.1]),
    np.array([1e-5, 0.7, 0.7, 1.5, 2.0, 1.0, 0.0, 0.1]),
)
NUM_PARAMS = len(LOWER)


@dataclass(frozen=True)
class FitQuality:
    """How well a fitted curve reproduces the points it was fitted on."""

    num_points: int
    mape: float  # mean absolute percentage error, as a fraction
    p90_ape: float
    max_ape: float

    def as_dict(self) -> dict[str, float]:
        return {"num_points": self.num_points, "mape": round(self.mape, 4),
                "p90_ape": round(self.p90_ape, 4), "max_ape": round(self.max_ape, 4)}


def quality(predicted: np.ndarray, measured: np.ndarray) -> FitQuality:
    ape = np.abs(predicted / measured - 1.0)
    return FitQuality(len(ape), float(ape.mean()), float(np.percentile(ape, 90)), float(ape.max()))


@dataclass(frozen=True)
class KernelSamples:
    """Measured kernels of one class, with their work and their chip's peaks (one row each)."""

    flops: np.ndarray
    dram_bytes: np.ndarray
    peak: np.ndarray
    bandwidth: np.ndarray
    work_units: np.ndarray
    compute_units: np.ndarray
    cache_bytes: np.ndarray  # on-chip SRAM when the benchmark re-ran the same operands, else 0
    time_s: np.ndarray

    @staticmethod
    def concat(parts: list[KernelSamples]) -> KernelSamples:
        return KernelSamples(*(np.concatenate([getattr(p, f) for p in parts]) for f in KernelSamples.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.time_s)


def predict_samples(theta: np.ndarray, s: KernelSamples) -> np.ndarray:
    return kernel_time_array(s.flops, s.dram_bytes, s.peak, s.bandwidth, theta, s.work_units, s.compute_units, s.cache_bytes)


def fit_kernel(samples: KernelSamples, fit_cache: bool = True, fixed: dict[int, float] | None = None,
               upper: np.ndarray | None = None, fit_ramp: bool = False) -> tuple[KernelParams, FitQuality]:
    """Fit the kernel parameters (or a subset) to `samples` (`upper` overrides UPPER).

    The cache-residency threshold is a step in the model (a working set fits on chip or not),
    which gradient methods cannot move, so it is chosen on a grid and the rest fitted for each.
    `fit_ramp` also fits the width of a ramp beyond that threshold (`cost.kernel`, `cache_ramp_frac`),
    which is continuous once it is > 0; without it the step stays a step (ramp 0).
    """
    fixed = dict(fixed or {})
    if not fit_ramp:
        fixed.setdefault(7, 0.0)
    if not fit_cache or not np.any(samples.cache_bytes > 0):
        return _fit_continuous(samples, {**fixed, 5: 1.0, 6: 0.0, 7: 0.0}, upper=upper)
    best = None
    for frac in CACHE_FRACTIONS:
        extra = {5: 1.0, 6: 0.0, 7: 0.0} if frac == 0.0 else {6: frac}
        params, q, cost = _fit_continuous(samples, {**fixed, **extra}, with_cost=True, upper=upper)
        if best is None or cost < best[2] * (1 - 1e-6):
            best = (params, q, cost)
    return best[0], best[1]


CACHE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _fit_continuous(samples: KernelSamples, fixed: dict[int, float], with_cost: bool = False,
                    upper: np.ndarray | None = None):
    hi_bounds = UPPER if upper is None else upper
    free = [i for i in range(NUM_PARAMS) if i not in fixed]
    log_t = np.log(samples.time_s)

    def full(x: np.ndarray) -> np.ndarray:
        theta = np.empty(NUM_PARAMS)
        theta[free] = x
        for i, v in fixed.items():
            theta[i] = v
        return theta

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(predict_samples(full(x), samples)) - log_t

    best = None
    for start in _STARTS:
        x0 = np.clip(start[free], LOWER[free] + 1e-12, hi_bounds[free] - 1e-12)
        res = least_squares(residual, x0, bounds=(LOWER[free], hi_bounds[free]), loss="soft_l1", f_scale=0.05,
                            x_scale="jac", max_nfev=4000)
        if best is None or res.cost < best.cost:
            best = res
    theta = full(best.x)
    params, q = KernelParams.from_vector(theta), quality(predict_samples(theta, samples), samples.time_s)
    return (params, q, best.cost) if with_cost else (params, q)


@dataclass(frozen=True)
class CollectiveSamples:
    """Measured collectives of one kind: devices, message bytes, link bandwidth, time, and (per row)
    the full-mesh domain size (0 for switched or ring fabrics; see `cost.collectives`)."""

    name: str
    num_devices: np.ndarray
    message_bytes: np.ndarray
    link_bw: np.ndarray
    time_s: np.ndarray
    mesh_domain: np.ndarray | None = None

    def mesh(self) -> np.ndarray:
        return np.zeros(len(self.time_s)) if self.mesh_domain is None else self.mesh_domain

    def subset(self, mask: np.ndarray) -> CollectiveSamples:
        return CollectiveSamples(self.name, self.num_devices[mask], self.message_bytes[mask], self.link_bw[mask],
                                 self.time_s[mask], self.mesh()[mask])


def collective_time_array(theta: np.ndarray, s: CollectiveSamples) -> np.ndarray:
    """Vectorised `cost.collectives.flat_time_s` (ring, or tree when faster for all-reduce);
    theta follows `CollectiveParams` field order."""
    small_lat, small_eff, lat, eff, per_step = theta
    n = s.num_devices.astype(int)

    def protocols(bus: np.ndarray) -> np.ndarray:
        return np.minimum(small_lat + bus / (s.link_bw * small_eff), lat + bus / (s.link_bw * eff))

    bus = np.array([bus_factor(s.name, k) for k in n]) * s.message_bytes
    ring = per_step * np.array([steps(s.name, k) for k in n], dtype=float) + protocols(bus)
    if s.name == "all_reduce":
        tree = per_step * np.array([tree_steps(k) for k in n], dtype=float) + protocols(TREE_BUS_FACTOR * s.message_bytes)
        ring = np.where(n > 2, np.minimum(ring, tree), ring)
    mesh = s.mesh()
    if not np.any(mesh > 0):
        return ring
    mesh_bw = np.array([mesh_bandwidth(1.0, k, max(int(d), 2)) for k, d in zip(n, mesh)]) * s.link_bw
    direct = per_step * mesh_steps(s.name) + np.minimum(small_lat + bus / (mesh_bw * small_eff), lat + bus / (mesh_bw * eff))
    return np.where(mesh > 0, direct, ring)


def fit_collective(samples: CollectiveSamples) -> tuple[CollectiveParams, FitQuality]:
    log_t = np.log(samples.time_s)
    lower, upper = np.array([0.0, 0.005, 0.0, 0.01, 0.0]), np.array([1e-3, 1.0, 5e-3, 1.0, 1e-4])

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(collective_time_array(x, samples)) - log_t

    best = None
    for x0 in ([5e-6, 0.1, 2e-5, 0.8, 1e-7], [2e-6, 0.3, 1e-5, 0.6, 1e-6], [1e-5, 0.05, 5e-5, 0.9, 0.0]):
        res = least_squares(residual, np.clip(x0, lower + 1e-12, upper - 1e-12), bounds=(lower, upper),
                            loss="soft_l1", f_scale=0.05, x_scale="jac", max_nfev=4000)
        if best is None or res.cost < best.cost:
            best = res
    params = CollectiveParams(*(float(v) for v in best.x))
    return params, quality(collective_time_array(best.x, samples), samples.time_s)
