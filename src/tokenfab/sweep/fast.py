"""Evaluating thousands of design points of one model at once, with the step model's own numbers.

The slow path (`sweep.evaluate.evaluate_point`) runs `capacity_at_slo` per point, i.e.
`search.plan_capacity.capacity_on_chip`: per TP degree a bisection over batch sizes of
`search.capacity` steady states, each a few dozen engine steps, a third of a second a point.
Here the step model runs once per TP degree on the first point's chip while recording every
kernel it times (its FLOPs, traffic shape, fitted parameters, which peak it runs against) and
every (operator, count) pair each step sums. Each kernel is then re-timed for all points at once
with the same formula (`cost.kernel`, `cost.onchip`, `cost.collectives` in numpy) and the steps
re-summed (`_step`): an `IterationTimes` whose step times are arrays. The steady states are the
search layer's own `steady_state` on those arrays (the step shapes depend on the batch and the
engine limits, not on the chip), and each point runs the search layer's own bisection
(`best_state`) on its element of them. Tests check that the result equals the slow path point by
point. Models with operators this recording does not cover (MoE grouped GEMMs, MLA, two-batch
overlap) fall back to the slow path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tokenfab.cost.chip_cost import ChipCost, chip_cost
from tokenfab.cost.collectives import TREE_BUS_FACTOR, bus_factor, collective_name, steps, tree_steps
from tokenfab.cost.kernel import KernelParams
from tokenfab.cost.onchip import (
    DecodeKvShape, GemmShape, PrefillKvShape, ResidencyPlan, gemm_traffic_array, onchip_memory, plan_residency,
    prefill_kv_passes_array,
)
from tokenfab.cost.profile import resolve_profile
from tokenfab.cost.result import OpCost
from tokenfab.errors import TokenfabError
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.step import StepModel, quantise_context
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.spec import ChipSpec
from tokenfab.search.capacity import CapacityResult, EngineLimits, IterationTimes, SteadyState, best_state, max_batch_for, steady_state
from tokenfab.search.plan_capacity import TP_DEGREES, engine_on_chip, tp_degrees_on
from tokenfab.sweep.capacity import SLO_PERCENTILE, PointCapacity
from tokenfab.sweep.evaluate import PointResult, evaluate_point, finish_point, good_die_cost_usd
from tokenfab.workload.spec import ModelSpec


class _NotRecordable(Exception):
    """A step contains an operator the recording cannot re-time (the caller falls back)."""


class _Peak(float):
    """A peak rate that remembers which of the chip's rates it is ('vector' for the vector unit)."""

    __slots__ = ("key",)


def _peak_key(peaks: dict[str, float], dtype: str) -> str:
    """Which rate `ChipCost.peak(dtype)` returns (same fallback order)."""
    if dtype in peaks:
        return dtype
    for alt in ("bf16", "fp16"):
        if alt in peaks:
            return alt
    return min(peaks, key=peaks.__getitem__)


class _Recorder(ChipCost):
    """A ChipCost that remembers the inputs of every kernel it times, by the OpCost it returns."""

    keeps_cost_identity = True  # keyed by id: the step model's memos must hand back these very objects

    def __init__(self, base: ChipCost):
        super().__init__(base.chip, base.resolved)
        self.kernels: dict[int, tuple] = {}
        vec = _Peak(self.vector_flop_per_s)
        vec.key = "vector"
        self.vector_flop_per_s = vec

    def peak(self, dtype: str) -> float:
        p = _Peak(super().peak(dtype))
        p.key = _peak_key(self._peaks, dtype)
        return p

    def run_kernel(self, op, flops, dram_bytes, peak, params, work_units, source, warm_cache=False,
                   onchip_bytes=0.0, shape=None, resident_bytes=0.0) -> OpCost:
        cost = super().run_kernel(op, flops, dram_bytes, peak, params, work_units, source, warm_cache, onchip_bytes, shape,
                                  resident_bytes)
        self.kernels[id(cost)] = (cost, flops, dram_bytes, getattr(peak, "key", None), params, work_units, shape)
        return cost


class _RecordingStepModel(StepModel):
    """A StepModel that keeps the (operator, count) pairs of every part it sums."""

    def __init__(self, *args, **kwargs):
        self.part_pairs: dict[int, list] = {}
        super().__init__(*args, **kwargs)

    def _aggregate(self, pairs):
        pairs = list(pairs)
        part = super()._aggregate(pairs)
        self.part_pairs[id(part)] = (part, pairs)  # holding the part keeps its id unique
        return part


class _Points:
    """Per-point chip figures as arrays (the floats ChipCost and PowerModel hold, per design)."""

    def __init__(self, chips: list[ChipSpec]):
        self.n = len(chips)
        keys = set(chips[0].peak_flop_per_s) | {"vector"}
        self.peaks = {k: np.empty(self.n) for k in keys}
        cols: dict[str, list[float]] = {k: [] for k in ("bw", "sram", "reuse", "sram_bw", "units", "link", "tdp", "idle", "cap")}
        for i, chip in enumerate(chips):
            p = {k: v.value for k, v in chip.peak_flop_per_s.items()}
            for k, v in p.items():
                self.peaks[k][i] = v
            self.peaks["vector"][i] = (chip.vector_flop_per_s.value if chip.vector_flop_per_s else 0.0) or min(p.values())
            onchip = onchip_memory(chip)
            cols["bw"].append(chip.memory_bandwidth_bytes_per_s)
            cols["sram"].append(onchip.capacity_bytes)
            cols["reuse"].append(onchip.reuse_capacity_bytes)
            cols["sram_bw"].append(onchip.bandwidth_bytes_per_s)
            cols["units"].append(resolve_profile(chip).compute_units)
            cols["link"].append(chip.scale_up.bandwidth_bytes_per_s.value if chip.scale_up else 0.0)
            cols["idle"].append(chip.power.idle_w.value)
            cols["tdp"].append(max(chip.power.tdp_w.value, chip.power.idle_w.value))
            cols["cap"].append(chip.device_memory_bytes)
        for k, v in cols.items():
            setattr(self, k, np.array(v, dtype=float))
        self.power_peak = self.peaks[_peak_key({k: 1.0 for k in chips[0].peak_flop_per_s}, "bf16")]
        self.chips = chips

    _COLUMNS = ("bw", "sram", "reuse", "sram_bw", "units", "link", "tdp", "idle", "cap", "power_peak")

    def subset(self, idx: list[int]) -> _Points:
        """The figures of the points `idx` only (a group that shares the engine's limits)."""
        sub = object.__new__(_Points)
        sub.n, sub.chips = len(idx), [self.chips[i] for i in idx]
        sub.peaks = {k: v[idx] for k, v in self.peaks.items()}
        for k in self._COLUMNS:
            setattr(sub, k, getattr(self, k)[idx])
        return sub


def _kernel_time(flops, dram, onchip, peak, bw, sbw, p: KernelParams, work, units) -> tuple[np.ndarray, np.ndarray]:
    """`cost.kernel.kernel_time_s` (cold, forward pass) over arrays; returns (time, memory-side time)."""
    t_c = flops / peak
    t_m = dram / bw
    if np.any(onchip > 0):
        t_m = np.where(onchip > 0, np.maximum(t_m, (dram + onchip) / sbw), t_m)
    half = p.half_occupancy_per_unit * units
    u = work / (work + half) if p.half_occupancy_per_unit > 0 else 1.0
    a = np.where(t_c > 0, t_c / (p.compute_eff * u), 0.0)
    b = t_m / p.memory_eff
    hi = np.maximum(a, b)
    safe = np.where(hi > 0, hi, 1.0)
    blended = safe * ((a / safe) ** p.overlap_exp + (b / safe) ** p.overlap_exp) ** (1.0 / p.overlap_exp)
    return p.launch_s + np.where(hi > 0, blended, 0.0), t_m


class _Retimer:
    """Times recorded operators for all points (memoised per operator)."""

    def __init__(self, pts: _Points, sm: _RecordingStepModel, rec: _Recorder, residency: tuple):
        self.pts, self.sm, self.rec = pts, sm, rec
        self.weights_fit, self.kv_budget, self.kvpt = residency
        self._memo: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.parts: dict[tuple, tuple] = {}  # (part id, cached KV tokens) -> (time, busy energy) arrays (`_step`)

    def op(self, cost: OpCost, cached_tokens: float) -> tuple[np.ndarray, np.ndarray]:
        """(time, power) arrays of one operator; `cached_tokens` decides KV residency of decode attention."""
        key = id(cost)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        pts = self.pts
        record = self.rec.kernels.get(key)
        if record is None:
            if cost.bound != "network":
                raise _NotRecordable(cost.op)
            t = self._collective(cost)
            activity = cost.bytes / (pts.bw * t) if cost.bytes else np.zeros(pts.n)
        else:
            _, flops, dram, peak_key, params, work, shape = record
            dram, onchip = self._traffic(dram, shape, cached_tokens)
            t, _ = _kernel_time(flops, dram, onchip, pts.peaks[peak_key], pts.bw, pts.sram_bw, params, work, pts.units)
            activity = np.maximum(flops / (pts.power_peak * t), dram / (pts.bw * t))
            activity = np.where(onchip > 0, np.maximum(activity, (dram + onchip) / (pts.sram_bw * t)), activity)
        power = np.where(t > 0, pts.idle + (pts.tdp - pts.idle) * np.minimum(1.0, activity), pts.idle)
        self._memo[key] = (t, power)
        return t, power

    def _traffic(self, dram: float, shape, cached_tokens: float) -> tuple[np.ndarray, np.ndarray]:
        pts, zero = self.pts, np.zeros(self.pts.n)
        if isinstance(shape, GemmShape):
            return gemm_traffic_array(shape, pts.reuse, self.weights_fit & shape.weights_on_chip)
        if isinstance(shape, PrefillKvShape):
            passes = prefill_kv_passes_array(shape, pts.reuse, pts.units)
            return shape.fixed_bytes + passes * shape.kv_bytes_per_pass, zero
        if isinstance(shape, DecodeKvShape):  # recorded with the KV held on chip: `dram` excludes the cache
            held = self.weights_fit & (self.kvpt > 0) & (cached_tokens * self.kvpt <= self.kv_budget)
            return np.where(held, dram, dram + shape.cache_bytes), np.where(held, shape.cache_bytes, 0.0)
        return dram + zero, zero

    def _collective(self, cost: OpCost) -> np.ndarray:
        """`LayerCoster.collective` (ring/tree, one-shot when fitted) within one scale-up domain, over link arrays."""
        name = collective_name({"tp_allreduce": "all_reduce", "lm_head_gather": "all_gather"}.get(cost.op, ""))
        n = self.sm.par.tp
        if not name or n > self.sm.system.chips_per_node:
            raise _NotRecordable(cost.op)
        message = cost.bytes / bus_factor(name, n)
        resolved = self.rec.resolved
        t = _flat_time(name, n, message, self.pts.link, resolved.collective(name, n)[0])
        if name == "all_reduce" and "all_reduce_oneshot" in resolved.profile.collectives:
            t = np.minimum(t, _flat_time(name, n, message, self.pts.link, resolved.collective("all_reduce_oneshot", n)[0]))
        return t


def _flat_time(name: str, n: int, message: float, link: np.ndarray, p) -> np.ndarray:
    """`cost.collectives.flat_time_s` over an array of link bandwidths."""
    def protocols(bus):
        return np.minimum(p.small_latency_s + bus / (link * p.small_bus_eff), p.latency_s + bus / (link * p.bus_eff))

    ring = p.per_step_latency_s * steps(name, n) + protocols(bus_factor(name, n) * message)
    if name == "all_reduce" and n > 2:
        tree = p.per_step_latency_s * tree_steps(n) + protocols(TREE_BUS_FACTOR * message)
        ring = np.where(tree < ring, tree, ring)
    return ring


def _step(sm: _RecordingStepModel, rt: _Retimer, batch: StepBatch) -> tuple[np.ndarray, np.ndarray]:
    """(time, energy) arrays of one step (single pipeline stage), summed as `StepModel.step` sums it."""
    result = sm.step(batch)
    cached = batch.num_decode * quantise_context(batch.decode_kv_len) if batch.num_decode else 0.0  # as step() does
    part_t, part_busy = [], []
    for part in result.part_records:  # summed part by part, in the order StepModel sums them (its memos' records)
        key = (id(part), cached)  # parts are memoised objects shared by steps (a token count's layers)
        hit = rt.parts.get(key)
        if hit is None:
            t = busy = 0.0
            for cost, count in sm.part_pairs[id(part)][1]:
                ot, power = rt.op(cost, cached)
                ot = ot * count
                t = t + ot
                busy = busy + power * ot
            hit = rt.parts[key] = (t, busy)
        part_t.append(hit[0])
        part_busy.append(hit[1])
    time_s = sum(part_t)
    return time_s, sm.power.to_wall(sum(part_busy) * sm.par.num_devices, time_s)  # the node's share, as step() adds it


class _ArrayTimes(IterationTimes):
    """`IterationTimes` whose steps are timed for every point at once: `_step`'s re-timing of the step
    the recording model runs, memoised per step shape (the steady state asks for some several times)."""

    def __init__(self, sm: _RecordingStepModel, rt: _Retimer, limits: EngineLimits):
        super().__init__(sm, limits)
        self.ovh_j = rt.pts.idle * sm.par.num_devices * self.ovh  # each point's idle draw (as the base class's)
        self.rt, self._memo = rt, {}

    def step_time_energy(self, batch: StepBatch):
        key = (batch.prefill, batch.num_decode, batch.decode_kv_len)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = _step(self.sm, self.rt, batch)
        return hit


def _tp_setup(pts: _Points, model: ModelSpec, tp: int):
    """Recording step model and chip cost of one TP degree on the first point's system, and each point's
    residency plan (weights held on chip, on-chip KV budget); None if the deployment cannot run."""
    base = pts.chips[0]
    try:
        system, par, prec, _, mem = engine_on_chip(base, model, tp)
        sm = _RecordingStepModel(model, system, par, prec)
    except TokenfabError:
        return None
    if sm._tbo or sm.par.pp > 1:  # two-batch overlap and pipeline stages are timed outside the recorded sums
        raise _NotRecordable("overlapped or pipelined step")
    rec = _Recorder(chip_cost(base))
    sm.cc = sm.coster.cc = rec
    sm.coster.residency = ResidencyPlan(True, float("inf"), mem.kv_bytes_per_token)  # record eligibility
    if sm.graph_coster is not sm.coster:  # decode-only steps time kernels at the replay floor: record those too
        graph_rec = _Recorder(sm.graph_coster.cc)
        graph_rec.kernels = rec.kernels
        sm.graph_coster.cc, sm.graph_coster.residency = graph_rec, sm.coster.residency
    plans = [plan_residency(onchip_memory(c), c.memory_bandwidth_bytes_per_s, mem.weights_bytes, mem.kv_bytes_per_token)
             for c in pts.chips]
    return sm, rec, np.array([p.weights_on_chip for p in plans]), np.array([p.kv_budget_bytes for p in plans]), mem


def _engine_limits(pts: _Points, model: ModelSpec, slo: SLOSpec, tp: int) -> list[tuple[EngineLimits | None, int]]:
    """Per point: the engine's limits and the largest batch its KV cache holds (`max_batch_for`), as
    `capacity_on_chip` derives them; both read the chip only through its device memory, so once per size."""
    memo: dict[float, tuple[EngineLimits | None, int]] = {}
    out = []
    for chip in pts.chips:
        key = chip.device_memory_bytes
        hit = memo.get(key)
        if hit is None:
            try:
                *_, limits, mem = engine_on_chip(chip, model, tp)
                hit = (limits, max_batch_for(mem, slo.input_tokens, slo.output_tokens, limits))
            except TokenfabError:
                hit = (None, 0)
            memo[key] = hit
        out.append(hit)
    return out


def _tp_capacities(pts: _Points, model: ModelSpec, slo: SLOSpec, tp: int) -> list[CapacityResult | None]:
    """`estimate_capacity` at one TP degree for every point (None where it raises): `best_state`'s
    bisection per point, on steady states computed for all points sharing the engine's limits at once."""
    out: list[CapacityResult | None] = [None] * pts.n
    setup = _tp_setup(pts, model, tp)
    if setup is None:
        return out
    sm, rec, weights_fit, kv_budget, mem = setup
    groups: dict[EngineLimits, list[int]] = {}
    per_point = _engine_limits(pts, model, slo, tp)
    for i, (limits, top) in enumerate(per_point):
        if limits is not None and top >= 1:
            groups.setdefault(limits, []).append(i)
    wait, inp, outp = SLO_PERCENTILE / 100.0, slo.input_tokens, slo.output_tokens
    for limits, members in groups.items():
        rt = _Retimer(pts.subset(members), sm, rec, (weights_fit[members], kv_budget[members], mem.kv_bytes_per_token))
        times, states = _ArrayTimes(sm, rt, limits), {}

        def state(b: int) -> SteadyState:
            hit = states.get(b)
            if hit is None:
                hit = states[b] = steady_state(times, b, inp, outp, limits, wait)
            return hit

        for j, i in enumerate(members):
            top = per_point[i][1]
            try:
                best = best_state(lambda b, j=j: state(b).point(j), top, outp, slo.ttft_s, slo.tpot_s, SLO_PERCENTILE,
                                  False)
            except TokenfabError:
                best = None
            if best is not None:
                out[i] = CapacityResult(state=best, num_devices=sm.par.num_devices, max_batch=top)
    return out


def fast_capacities(chips: list[ChipSpec], model: ModelSpec, slo: SLOSpec) -> list[PointCapacity | None]:
    """`capacity_at_slo` for every chip (all derived from chips[0] by knobs that keep its catalog name and
    scale-up domain): the best TP degree's capacity per point, None where none meets the SLO. The
    capacities carry no error band (the sweep reports none)."""
    pts = _Points(chips)
    best: list[PointCapacity | None] = [None] * pts.n
    rate = [-np.inf] * pts.n
    for tp in tp_degrees_on(chips[0]):
        for i, r in enumerate(_tp_capacities(pts, model, slo, tp)):
            if r is not None and (best[i] is None or r.tokens_per_s_per_chip > rate[i]):
                best[i], rate[i] = PointCapacity.of(r, tp), r.tokens_per_s_per_chip
    return best


def evaluate_points(chips: list[ChipSpec], knob_sets: list[dict[str, Any]], model: ModelSpec, slo: SLOSpec,
                    progress: Callable[[int, int], None] | None = None) -> list[PointResult]:
    """Every point for one model: the batched path, or point by point where it does not apply."""
    try:
        capacities = fast_capacities(chips, model, slo)
    except _NotRecordable:
        out = []
        for i, (chip, knobs) in enumerate(zip(chips, knob_sets)):
            out.append(evaluate_point(chip, knobs, model, slo))
            if progress:
                progress(i + 1, len(chips))
        return out
    note = f"{model.name} cannot meet the SLO on this design at tp <= {TP_DEGREES[-1]}"
    results = [finish_point(k, model.name, good_die_cost_usd(c), cap, "" if cap else note)
               for c, k, cap in zip(chips, knob_sets, capacities)]
    if progress:
        progress(len(chips), len(chips))
    return results
