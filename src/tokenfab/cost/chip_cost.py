"""A chip plus its resolved efficiency profile, as plain floats for fast cost queries."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tokenfab.cost.kernel import KernelParams, kernel_time_s
from tokenfab.cost.onchip import onchip_memory
from tokenfab.cost.profile import ResolvedProfile, profile_from_dict, resolve_profile, load_profile, GENERIC
from tokenfab.cost.result import OpCost, checked_cost, classify_bound
from tokenfab.hardware.spec import ChipSpec


@dataclass(slots=True, unsafe_hash=True)  # not frozen: built per operator, see cost.result.OpCost
class KernelWork:
    """What a kernel must do, independent of efficiencies: the fitter and the estimators share it."""

    flops: float
    dram_bytes: float
    peak: float
    work_units: float
    kind: str  # key of the fitted curve in the profile table
    onchip_bytes: float = 0.0  # bytes of data held on chip across steps (see cost.onchip)
    shape: object | None = None  # what the traffic depends on (a cost.onchip shape), for design sweeps
    # Distinct bytes a warm re-run must keep on chip to be served from cache, where that is less than the
    # traffic (a fused kernel writes and re-reads its own intermediates); 0: the traffic itself.
    resident_bytes: float = 0.0


def sustained_peaks(chip: ChipSpec) -> dict[str, float]:
    """The matrix rates a kernel can reach per data type: the stated peaks at the clock the chip sustains under load
    (`ChipSpec.compute_clock_frac`; the stated peaks where the catalog gives no sustained clock)."""
    frac = chip.compute_clock_frac
    return {k: v.value * frac for k, v in chip.peak_flop_per_s.items()}


def warm_cache_bytes(sram_bytes: float, dram_bytes: float, resident_bytes: float) -> float:
    """The cache size the kernel formula compares a warm kernel's traffic against: the chip's SRAM, scaled by
    traffic / resident bytes when fewer distinct bytes than the traffic must stay on chip (`KernelWork`)."""
    if resident_bytes <= 0.0 or dram_bytes <= 0.0:
        return sram_bytes
    return sram_bytes * dram_bytes / resident_bytes


class ChipCost:
    """Everything the operator cost functions need about one chip.

    Built once per chip (`chip_cost(chip)` caches it); holds peaks and bandwidth as
    floats so that the per-operator functions do no dictionary or pydantic work.
    """

    # Whether memos of the OpCosts it returns must keep the objects themselves (a subclass that keys them by id);
    # otherwise they keep flat records (cost.result.cost_record), which the garbage collector does not track.
    keeps_cost_identity: bool = False

    def __init__(self, chip: ChipSpec, resolved: ResolvedProfile | None):
        """`resolved` may be None only to compute kernel work (FLOPs, bytes) for fitting."""
        self.chip = chip
        self._resolved = resolved
        self.bandwidth_bytes_per_s = chip.memory_bandwidth_bytes_per_s
        if resolved is not None:
            self.compute_units = resolved.compute_units
        else:
            self.compute_units = chip.num_compute_units.value if chip.num_compute_units else 0.0
        self.sram_bytes = chip.sram_bytes  # what a warm microbenchmark may keep in cache
        self.sram_partitions = chip.sram_partitions  # copies a partitioned cache keeps of widely read data
        self.onchip = onchip_memory(chip)  # the on-chip level a forward pass uses (cost.onchip)
        self._peaks = sustained_peaks(chip)
        vector = chip.vector_flop_per_s.value * chip.compute_clock_frac if chip.vector_flop_per_s else None
        self.vector_flop_per_s = vector or min(self._peaks.values())
        # (act, weight, variant) -> a GEMM's profile key, compute format and operand bytes (`cost.gemm.gemm_work`): they
        # depend on the chip's formats only, and every GEMM estimate asks
        self.gemm_formats: dict[tuple[str, str, str], tuple] = {}
        # ... and with the compute peak and the fitted curve (`cost.gemm.estimate_gemm`)
        self.gemm_curves: dict[tuple[str, str, str], tuple] = {}
        self.elementwise_curve: tuple | None = None  # (params, source) of streaming kernels (`cost.elementwise`)

    @property
    def resolved(self) -> ResolvedProfile:
        if self._resolved is None:
            raise RuntimeError(f"ChipCost of {self.chip.name} was built without a profile (work-only)")
        return self._resolved

    def peak(self, dtype: str) -> float:
        """Matrix peak for `dtype`, falling back to the 16-bit rate (then the lowest rate) if absent."""
        if dtype in self._peaks:
            return self._peaks[dtype]
        for alt in ("bf16", "fp16"):
            if alt in self._peaks:
                return self._peaks[alt]
        return min(self._peaks.values())

    def supports(self, dtype: str) -> bool:
        return dtype in self._peaks

    def run_kernel(
        self, op: str, flops: float, dram_bytes: float, peak: float, params: KernelParams,
        work_units: float, source: str, warm_cache: bool = False, onchip_bytes: float = 0.0,
        shape: object | None = None, resident_bytes: float = 0.0,
    ) -> OpCost:
        """Time one kernel with the shared formula and package it as an OpCost. `shape` (a
        `cost.onchip` shape) lets a recording subclass re-evaluate the traffic at other designs;
        `resident_bytes` (see `KernelWork`) only matters with `warm_cache`."""
        onchip_bw = self.onchip.bandwidth_bytes_per_s
        time_s, roofline = kernel_time_s(
            flops, dram_bytes, peak, self.bandwidth_bytes_per_s, params, work_units,
            self.compute_units, warm_cache_bytes(self.sram_bytes, dram_bytes, resident_bytes) if warm_cache else 0.0,
            onchip_bytes, onchip_bw,
        )
        onchip_s = (dram_bytes + onchip_bytes) / onchip_bw if onchip_bytes > 0.0 else 0.0
        bound = classify_bound(flops / peak, dram_bytes / self.bandwidth_bytes_per_s, params.launch_s, onchip_s)
        return checked_cost(op, time_s, flops, dram_bytes, bound, roofline, source, onchip_bytes)


@functools.lru_cache(maxsize=256)
def chip_cost(chip: ChipSpec, profile_path: str | None = None) -> ChipCost:
    """The (cached) ChipCost of a chip; an embedded calibrated profile wins over the catalog's."""
    if chip.efficiency_profile is not None:
        generic = load_profile(GENERIC)
        own = profile_from_dict(chip.efficiency_profile, f"{chip.name} (embedded)")
        base = resolve_profile(chip)
        resolved = ResolvedProfile(own, generic or own, "fitted", base.compute_units,
                                   f"calibrated profile embedded in {chip.name}", clock_hz=chip.clock,
                                   not_inherited=base.not_inherited)
        return ChipCost(chip, resolved)
    return ChipCost(chip, resolve_profile(chip, profile_path))


@functools.lru_cache(maxsize=256)
def graph_chip_cost(chip: ChipSpec, floor_s: float, profile_path: str | None = None) -> ChipCost:
    """`chip_cost` with every compute kernel's fixed cost capped at `floor_s`: the chip as a captured CUDA graph
    replays kernels (see `ResolvedProfile.with_launch_floor`)."""
    return ChipCost(chip, chip_cost(chip, profile_path).resolved.with_launch_floor(floor_s))
