"""Evaluating thousands of design points of one model at once, with the step model's own numbers.

The slow path (`sweep.evaluate.evaluate_point`) runs `capacity_at_slo` per point, i.e.
`search.plan_capacity.capacity_on_chip`: per TP degree the search layer's `bisection` over batch
sizes of `search.capacity.steady_state`s, each a few dozen engine steps, a third of a second a
point. Here, per TP degree, the step model runs on the first point's chip while recording every
kernel it times (`sweep.retime`), and every point's bisection runs at once, in lock-step: each
round, the points that ask for the steady state at the same batch share it. That state's step
shapes depend on the batch and the engine's limits, not on the chip, so they are listed once
(`_Plan`: a dry run of `steady_state`), their kernels re-timed for just those points in 2D
arrays, the steps re-summed as `StepModel.step` sums them, and `steady_state` itself run on the
resulting arrays of step times (`_LookupTimes`, an `IterationTimes`). Tests check that the result
equals the slow path point by point, to float rounding (dense and MoE models). Models with operators
the recording does not cover (an operator not timed through `ChipCost.run_kernel`, collectives
other than one scale-up domain's TP all-reduce and all-gather, two-batch overlap, pipeline stages)
fall back to the slow path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from tokenfab.cost.chip_cost import chip_cost
from tokenfab.cost.onchip import ResidencyPlan, onchip_memory, plan_residency
from tokenfab.errors import TokenfabError
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.step import quantise_context
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.spec import ChipSpec
from tokenfab.search.capacity import (
    CapacityResult, EngineLimits, IterationTimes, SteadyState, bisection, max_batch_for, steady_state,
)
from tokenfab.search.plan_capacity import TP_DEGREES, engine_on_chip, tp_degrees_on
from tokenfab.sweep.capacity import SLO_PERCENTILE, PointCapacity
from tokenfab.sweep.evaluate import PointResult, evaluate_point, finish_point, good_die_cost_usd
from tokenfab.sweep.layer_rows import LayerRows
from tokenfab.sweep.retime import (
    _FIELDS, KernelRows, Kernels, _Block, _NotRecordable, _Points, _Recorder, _RecordingStepModel,
)
from tokenfab.workload.spec import ModelSpec


def _key(batch: StepBatch) -> tuple:
    return batch.prefill, batch.num_decode, batch.decode_kv_len


class _Collector(IterationTimes):
    """Lists the steps a steady state asks for (their shapes do not depend on their times)."""

    def __init__(self, sm, limits: EngineLimits):
        super().__init__(sm, limits)
        self.steps: dict[tuple, StepBatch] = {}

    def step_time_energy(self, batch: StepBatch):
        self.steps.setdefault(_key(batch), batch)
        return 1.0, 1.0


class _LookupTimes(IterationTimes):
    """Step times of a block of points, computed beforehand (`_Plan.state`); each point's idle draw."""

    def __init__(self, sm, limits: EngineLimits, times: dict[tuple, tuple], idle_w: np.ndarray):
        super().__init__(sm, limits)
        self.times = times
        self.idle_w = idle_w * sm.par.num_devices  # as the base class's, per point (the eager host time's draw)
        self.ovh_j = self.idle_w * self.ovh

    def step_time_energy(self, batch: StepBatch):
        return self.times[_key(batch)]


class _Plan:
    """The chip-independent part of one steady state: its steps, their parts, and the kernels they sum."""

    def __init__(self, sm: _RecordingStepModel, kernels: Kernels, limits: EngineLimits, batch: int, inp: int, outp: int,
                 wait: float):
        self.sm, self.kernels, self.limits, self.args = sm, kernels, limits, (batch, inp, outp, limits, wait)
        collector = _Collector(sm, limits)
        steady_state(collector, *self.args)
        local: dict[int, int] = {}
        rows: list[tuple] = []
        parts: dict[int, int] = {}  # id(part) -> its position among the plan's distinct parts
        part_rows: list = []  # per distinct part: its local kernel rows (a list, or a layer stub's key), its counts
        self.keys: list[tuple] = []
        step_parts: list[list[int]] = []  # per step, the positions of the parts it sums, in StepModel.step's order
        for key, step in collector.steps.items():
            result = sm.step(step)
            cached = step.num_decode * quantise_context(step.decode_kv_len) if step.num_decode else 0.0  # as step() does
            pids = []
            for part in result.part_records:
                pos = parts.get(id(part))
                if pos is None:
                    pos = parts[id(part)] = len(part_rows)
                    pairs = sm.part_pairs[id(part)][1]
                    if pairs is None:  # a layer stub: (0, 0, 0, LAYER_STUB, tokens, graphed)
                        part_rows.append((None, part[4:]))
                    else:
                        idx = []
                        for cost, count in pairs:
                            j = local.get(id(cost))
                            if j is None:
                                j = local[id(cost)] = len(rows)
                                rows.append(kernels.row(cost, cached))
                            idx.append(j)
                        part_rows.append((idx, [count for _, count in pairs]))
                pids.append(pos)
            self.keys.append(key)
            step_parts.append(pids)
        table, self.gather, counts, self.starts = _gather(np.array(rows, dtype=float).reshape(len(rows), len(_FIELDS)),
                                                          part_rows, sm.layer_rows)
        self.rows, self.counts = KernelRows(table), counts[None, :]
        widths = {len(p) for p in step_parts}
        if len(widths) != 1:  # every single-stage step sums layers, head and attention cores
            raise _NotRecordable("steps of different part counts")
        self.columns = [np.array(c, dtype=int) for c in zip(*step_parts)]  # per part slot, each step's part

    def state(self, pts: _Points, residency: tuple) -> SteadyState:
        """The steady state of the points `pts`, as arrays: `steady_state` on their re-timed steps. Operators are
        summed part by part and parts step by step as `StepModel.step` sums them, along each point's row."""
        block = _Block(self.rows, pts, residency, self.kernels)
        ot = block.time[:, self.gather] * self.counts
        part_t = np.add.reduceat(ot, self.starts, axis=1)
        part_busy = np.add.reduceat(block.power[:, self.gather] * ot, self.starts, axis=1)
        time_s, busy = 0, 0
        for c in self.columns:  # Python's sum over the parts: 0 + p0 + p1 + ...
            time_s = time_s + part_t[:, c]
            busy = busy + part_busy[:, c]
        energy = self.sm.power.to_wall(busy * self.sm.par.num_devices, time_s)
        times = {key: (time_s[:, j], energy[:, j]) for j, key in enumerate(self.keys)}
        return steady_state(_LookupTimes(self.sm, self.limits, times, pts.idle), *self.args)


def _gather(table: np.ndarray, part_rows: list, layer_rows: LayerRows | None):
    """The plan's kernel table (the recorded rows, then the layer stubs' rows from `layer_rows`, all token counts of
    one kind at once), and the rows and counts of every distinct part, concatenated, with where each part starts."""
    blocks, offset, stub_rows = [table], len(table), {}
    for graphed in (False, True):
        keys = list(dict.fromkeys(key for idx, key in part_rows if idx is None and key[1] == graphed))
        if not keys:
            continue
        rows, counts = layer_rows.rows(np.array([k[0] for k in keys], dtype=np.int64), graphed)
        num_ops = rows.shape[1]
        blocks.append(rows.reshape(-1, rows.shape[2]))
        for i, key in enumerate(keys):
            stub_rows[key] = (np.arange(offset + i * num_ops, offset + (i + 1) * num_ops), counts)
        offset += len(keys) * num_ops
    gather, weights, starts, n = [], [], [], 0
    for idx, counts in part_rows:
        if idx is None:
            idx, counts = stub_rows[counts]
        if not len(idx):  # reduceat would not give an empty part's zero
            raise _NotRecordable("a part without operators")
        starts.append(n)
        n += len(idx)
        gather.append(np.asarray(idx, dtype=int))
        weights.append(np.asarray(counts, dtype=float))
    return np.concatenate(blocks), np.concatenate(gather), np.concatenate(weights), np.array(starts, dtype=int)


def _tp_setup(pts: _Points, model: ModelSpec, tp: int, record_on: ChipSpec | None = None):
    """Recording step model and its kernel rows for one TP degree on `record_on`'s system (default: the first
    point's), and each point's residency plan (weights held on chip, on-chip KV budget, KV bytes per token);
    None if it cannot run."""
    base = record_on if record_on is not None else pts.chips[0]
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
    kernels = Kernels(sm, rec, pts.peak_keys)
    sm.layer_rows = LayerRows.build(sm, kernels)  # None: layer parts through the step model (MLA, MoE, ...)
    plans = [plan_residency(onchip_memory(c), c.memory_bandwidth_bytes_per_s, mem.weights_bytes, mem.kv_bytes_per_token)
             for c in pts.chips]
    residency = (np.array([p.weights_on_chip for p in plans]), np.array([p.kv_budget_bytes for p in plans]),
                 mem.kv_bytes_per_token)
    return sm, kernels, residency


def _engine_limits(pts: _Points, model: ModelSpec, slo: SLOSpec, tp: int) -> list[tuple[EngineLimits | None, int]]:
    """Per point: the engine's limits and the largest batch its KV cache holds (`max_batch_for`), as
    `capacity_on_chip` derives them; both read the chip only through its memory totals (as the device and
    as CUDA report them), so once per pair."""
    memo: dict[tuple, tuple[EngineLimits | None, int]] = {}
    out = []
    for chip in pts.chips:
        key = (chip.device_memory_bytes, chip.cuda_total_memory_bytes)
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


def _each_point(state: SteadyState, n: int) -> list[SteadyState]:
    """`state.point(i)` for every i < n at once (each array field converted to floats once, not per point)."""
    cols = [v.tolist() if isinstance(v, np.ndarray) else [v] * n for v in (getattr(state, f) for f in _STATE_FIELDS)]
    return [SteadyState(*values) for values in zip(*cols)]


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(SteadyState))


def _lock_step(setup: tuple, pts: _Points, residency: tuple, limits: EngineLimits, tops: list[int],
               slo: SLOSpec) -> list[SteadyState | None]:
    """Every point's `bisection` at once: each round, the points asking for the same batch share its state, and a
    point asking again for a batch it was answered before (the bisection's last two asks often are) gets its own
    state back at once (a point's state does not depend on the points beside it in a block)."""
    sm, kernels = setup
    inp, outp, wait = slo.input_tokens, slo.output_tokens, SLO_PERCENTILE / 100.0
    searches = [bisection(top, outp, slo.ttft_s, slo.tpot_s, SLO_PERCENTILE, False) for top in tops]
    found: list[SteadyState | None] = [None] * len(tops)
    seen: list[dict[int, SteadyState]] = [{} for _ in tops]
    pending = {j: next(s) for j, s in enumerate(searches)}

    def answer(j: int, state: SteadyState) -> None:
        while True:
            try:
                b = searches[j].send(state)
            except StopIteration as done:
                found[j] = done.value
                return
            state = seen[j].get(b)
            if state is None:
                pending[j] = b
                return

    plans: dict[int, _Plan] = {}
    while pending:
        asks: dict[int, list[int]] = {}
        for j, b in pending.items():
            asks.setdefault(b, []).append(j)
        pending = {}
        for b, js in asks.items():
            try:
                plan = plans.get(b) or plans.setdefault(b, _Plan(sm, kernels, limits, b, inp, outp, wait))
                state = plan.state(pts.subset(js), tuple(r[js] if isinstance(r, np.ndarray) else r for r in residency))
            except TokenfabError:  # the slow path's estimate_capacity raises the same: no capacity at this TP
                continue
            for j, one in zip(js, _each_point(state, len(js))):
                seen[j][b] = one
                answer(j, one)
    return found


def _tp_capacities(pts: _Points, model: ModelSpec, slo: SLOSpec, tp: int,
                   record_on: ChipSpec) -> list[CapacityResult | None]:
    """`estimate_capacity` at one TP degree for every point (None where it raises), per group of points that
    share the engine's limits."""
    out: list[CapacityResult | None] = [None] * pts.n
    setup = _tp_setup(pts, model, tp, record_on)
    if setup is None:
        return out
    sm, kernels, (weights_fit, kv_budget, kvpt) = setup
    groups: dict[EngineLimits, list[int]] = {}
    per_point = _engine_limits(pts, model, slo, tp)
    for i, (limits, top) in enumerate(per_point):
        if limits is not None and top >= 1:
            groups.setdefault(limits, []).append(i)
    for limits, members in groups.items():
        tops = [per_point[i][1] for i in members]
        found = _lock_step((sm, kernels), pts.subset(members), (weights_fit[members], kv_budget[members], kvpt),
                           limits, tops, slo)
        for i, top, best in zip(members, tops, found):
            if best is not None:
                out[i] = CapacityResult(state=best, num_devices=sm.par.num_devices, max_batch=top)
    return out


def fast_capacities(chips: list[ChipSpec], model: ModelSpec, slo: SLOSpec,
                    record_on: ChipSpec | None = None) -> list[PointCapacity | None]:
    """`capacity_at_slo` for every chip (all derived from one base by knobs that keep its catalog name and
    scale-up domain): the best TP degree's capacity per point, None where none meets the SLO. The step
    model records its kernels on `record_on` (default chips[0]); a sweep split into chunks passes its first
    point to every chunk, so that each point's figures do not depend on the chunk it is in. The
    capacities carry no error band (the sweep reports none)."""
    record_on = record_on if record_on is not None else chips[0]
    pts = _Points(chips)
    best: list[PointCapacity | None] = [None] * pts.n
    rate = [-np.inf] * pts.n
    for tp in tp_degrees_on(record_on):
        for i, r in enumerate(_tp_capacities(pts, model, slo, tp, record_on)):
            if r is not None and (best[i] is None or r.tokens_per_s_per_chip > rate[i]):
                best[i], rate[i] = PointCapacity.of(r, tp), r.tokens_per_s_per_chip
    return best


def evaluate_points(chips: list[ChipSpec], knob_sets: list[dict[str, Any]], model: ModelSpec, slo: SLOSpec,
                    progress: Callable[[int, int], None] | None = None,
                    record_on: ChipSpec | None = None) -> list[PointResult]:
    """Every point for one model: the batched path (recording on `record_on`, see `fast_capacities`), or point
    by point where it does not apply."""
    try:
        capacities = fast_capacities(chips, model, slo, record_on)
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
