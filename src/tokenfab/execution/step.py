"""One engine step of a model under a parallel plan on a system: time, work, energy, breakdown.

`StepModel` is built once per (model, system, plan, formats) and then answers many
step queries; the serving simulator and `predict` both go through it. A step's time is
the pipeline's in steady state: with `pp` stages the replica's batch runs as up to `pp` micro-batches kept in
flight across steps, each stage working on a different one (TensorRT-LLM's PyTorch executor schedules
num_micro_batches = pp_size batches, _torch/pyexecutor/py_executor.py `_executor_loop_pp`; vLLM V1 keeps
max_concurrent_batches = pp batches in its batch queue, v1/engine/core.py `step_with_batch_queue`). A micro-batch
must come back from the last stage before its next token is scheduled, so a step (every micro-batch advancing one
token) takes the round trip of one micro-batch: `pp` stage times plus `pp - 1` activation hops, whatever the number
of micro-batches up to `pp`; the pipeline fill (`pipeline_fill`) is paid once, when the pipeline starts empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokenfab.cost.chip_cost import ChipCost, chip_cost, graph_chip_cost
from tokenfab.cost.elementwise import embedding_bytes, sampling_bytes
from tokenfab.cost.result import OpCost
from tokenfab.execution.config import (
    ParallelConfig, PrecisionConfig, check_parallelism, check_precision, layers_per_stage,
)
from tokenfab.cost.onchip import plan_residency
from tokenfab.execution.decode_arrays import DecodeCorePlan
from tokenfab.execution.graph_replay import kernel_floor_s
from tokenfab.execution.layers import LayerCoster, StepBatch
from tokenfab.execution.moe_routing import model_routing
from tokenfab.execution.memory import MemoryModel
from tokenfab.execution.overlap import layer_stages, split_two, tbo_makespan
from tokenfab.execution.pipeline import micro_batches, num_micro_batches
from tokenfab.execution.power import PowerModel
from tokenfab.hardware.spec import SystemSpec
from tokenfab.units import bytes_per_element
from tokenfab.workload.spec import ModelSpec
from tokenfab.workload.weight_format import checkpoint_layout


@dataclass(slots=True)
class OpTotal:
    """One row of a step's breakdown: an operator summed over the layers of a device."""

    op: str
    time_s: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0
    roofline_s: float = 0.0
    source: str = ""
    onchip_bytes: float = 0.0  # bytes read from data held on chip (not in `bytes`, which is DRAM traffic)
    _bound_time: dict[str, float] = field(default_factory=dict)

    def add(self, cost: OpCost, count: float) -> None:
        t = cost.time_s * count
        self.time_s += t
        self.flops += cost.flops * count
        self.bytes += cost.bytes * count
        self.onchip_bytes += cost.onchip_bytes * count
        self.roofline_s += cost.roofline_s * count
        self._bound_time[cost.bound] = self._bound_time.get(cost.bound, 0.0) + t
        if self.source != cost.source:
            self.source = cost.source if not self.source else "mixed"

    @property
    def bound(self) -> str:
        """The limit that accounts for most of this operator's time."""
        bound_time = self._bound_time
        if len(bound_time) == 1:  # the common case: what max() would return, without it
            for bound in bound_time:
                return bound
        return max(bound_time, key=bound_time.__getitem__) if bound_time else "memory"


# A part record: the operators of (part of) one pipeline stage as the step model's memos keep them, one flat tuple
# (time_s, roofline_s, busy_energy_j, *row, *row, ...) of ROW_LEN fields per operator in first-seen order: op, time_s,
# flops, bytes, roofline_s, source, onchip_bytes, bounds; `bounds` is the limit's name when all the operator's time
# has one limit (its time is then the row's), else a flat tuple (bound, time_s, bound, time_s, ...).
# Why flat tuples: a young collection stops tracking a tuple whose items are untracked, but it visits a nested tuple
# only after the tuple holding it, so each level of nesting survives one more collection; a flat tuple of floats and
# strings is untracked at its first one, and memo entries never reach the oldest generation, whose growth triggers
# full collections. Kept as slotted records (~36 new ones per `predict` call of a new shape), they made garbage
# collection 15-20% of a run of varied calls.
PartRecord = tuple
ROW_LEN = 8
RECORD_HEAD = 3  # time_s, roofline_s, busy_energy_j


def record_rows(record: PartRecord) -> list[tuple]:
    """The operator rows of a part record: (op, time_s, flops, bytes, roofline_s, source, onchip_bytes, bounds)."""
    return [record[i:i + ROW_LEN] for i in range(RECORD_HEAD, len(record), ROW_LEN)]


def bound_items(time_s: float, bounds: str | tuple) -> list[tuple[str, float]]:
    """(bound, time) pairs of a row's `bounds` field (see PartRecord), in the order they were first met."""
    if type(bounds) is str:
        return [(bounds, time_s)]
    return list(zip(bounds[::2], bounds[1::2]))


@dataclass(slots=True)
class StepPart:
    """Operators of (part of) one pipeline stage, aggregated: per-op totals and sums (a view of a part record)."""

    rows: list[tuple]  # see `record_rows`
    time_s: float
    roofline_s: float
    busy_energy_j: float  # one device, one pass of these operators

    @classmethod
    def of(cls, record: PartRecord) -> StepPart:
        return cls(record_rows(record), record[0], record[1], record[2])

    @property
    def totals(self) -> dict[str, OpTotal]:
        """Per-operator totals as OpTotal rows (fresh ones on each access)."""
        return {r[0]: OpTotal(r[0], r[1], r[2], r[3], r[4], r[5], r[6], dict(bound_items(r[1], r[7]))) for r in self.rows}


@dataclass(slots=True)
class StepResult:
    """Time and work of one step on the busiest device of one replica.

    `part_records` are the memos' part records (see `PartRecord`); `parts` views them as StepParts."""

    time_s: float
    roofline_s: float
    energy_j: float  # all devices of the deployment during this step
    num_tokens: int
    part_records: tuple[PartRecord, ...]

    @property
    def parts(self) -> tuple[StepPart, ...]:
        return tuple(StepPart.of(record) for record in self.part_records)

    @property
    def breakdown(self) -> dict[str, OpTotal]:
        """Per-operator totals of one pass through the busiest stage (merged on demand)."""
        merged: dict[str, OpTotal] = {}
        for record in self.part_records:
            for name, time_s, flops, nbytes, roofline_s, source, onchip_bytes, bounds in record_rows(record):
                into = merged.get(name)
                if into is None:  # a first row: its copy, as adding it to a zero row would make it
                    bound_time = {}
                    for bound, t in bound_items(time_s, bounds):
                        bound_time[bound] = 0.0 + t
                    merged[name] = OpTotal(name, 0.0 + time_s, 0.0 + flops, 0.0 + nbytes, 0.0 + roofline_s,
                                           source, 0.0 + onchip_bytes, bound_time)
                    continue
                into.time_s += time_s
                into.flops += flops
                into.bytes += nbytes
                into.onchip_bytes += onchip_bytes
                into.roofline_s += roofline_s
                for bound, t in bound_items(time_s, bounds):
                    into._bound_time[bound] = into._bound_time.get(bound, 0.0) + t
                into.source = source if not into.source or into.source == source else "mixed"
        return merged

    @property
    def flops(self) -> float:
        return sum(r[2] for p in self.part_records for r in record_rows(p))

    @property
    def bytes(self) -> float:
        return sum(r[3] for p in self.part_records for r in record_rows(p))


class StepModel:
    """Answers 'how long does this step take' for one deployment.

    Everything but the attention core depends only on token counts, so it is aggregated once
    per (prefill shape, decode count) and reused across steps that differ only in context length
    (the common case in decoding and in the serving simulator). Decode-only steps are costed as the
    CUDA-graph replay engines run them, with the chip's fitted replay floor per kernel where it has
    one (`graph_coster`; see `tokenfab.execution.graph_replay`); steps with prefill work run eagerly.
    """

    def __init__(self, model: ModelSpec, system: SystemSpec, par: ParallelConfig, prec: PrecisionConfig,
                 profile_path: str | None = None, staggered_prefill: bool = False):
        check_precision(system.chip, prec)
        check_parallelism(model, system, par)
        self.model, self.system, self.par, self.prec = model, system, par, prec
        self.cc: ChipCost = chip_cost(system.chip, profile_path)
        routing = model_routing(model.family)  # the family's fitted expert popularity (execution.moe_routing)
        self.coster = LayerCoster(self.cc, system, par, prec, model.hidden_size, routing)
        footprint = MemoryModel(model, system, par, prec)
        self.coster.residency = plan_residency(self.cc.onchip, self.cc.bandwidth_bytes_per_s,
                                               footprint.weights_bytes, footprint.kv_bytes_per_token)
        floor_s = kernel_floor_s(system.chip)
        self.graph_coster = self.coster  # the coster of decode-only (graph-replayed) steps
        if floor_s is not None:
            self.graph_coster = LayerCoster(graph_chip_cost(system.chip, floor_s, profile_path), system, par, prec,
                                            model.hidden_size, routing)
            self.graph_coster.residency = self.coster.residency
        self.power = PowerModel(system.chip, self.cc, system, par.num_devices)
        self._at_wall = self.power.wall_factor != 1.0 or self.power.host_busy_w != 0.0
        self.stage_layers = layers_per_stage(model.num_layers, par.pp)
        self.layer_fraction = self.stage_layers / model.num_layers  # share of each group on the busiest stage
        self._group_counts = [(g, g.num_layers * self.layer_fraction) for g in model.layers]
        self._act_bytes = bytes_per_element(prec.activations)
        # memos: keys and values are plain tuples of plain values (see PartRecord)
        self._cache: dict[tuple, tuple] = {}  # StepResult fields, the part records spread
        self._layers_cache: dict[tuple, PartRecord] = {}
        self._head_cache: dict[tuple, PartRecord] = {}
        self._decode_core_cache: dict[tuple, tuple[float, float]] = {}
        self._prefill_core_cache: dict[tuple, tuple[float, float]] = {}
        self._core_cache: dict[tuple, PartRecord] = {}
        self._static_cache: dict[tuple, tuple[float, float]] = {}
        self._fast_step_cache: dict[tuple, tuple[float, float]] = {}  # single-stage fast_step, by quantised context
        self._decode_pair_cache: dict[tuple, tuple[float, float, float, float]] = {}  # likewise decode_pair
        self._decode_plans: list[DecodeCorePlan | None] | None = None  # per layer group, for decode_times (on first use)
        self._pp, self._num_devices = par.pp, par.num_devices
        self._mla = any(g.attention.kind == "mla" for g in model.layers)
        # Attention-DP MoE under serving traffic: ranks prefill alone, so the experts' token count depends on
        # the decode share of a step (`layers.expert_group_tokens`), and the layer memo is keyed by it.
        self._moe_dp = staggered_prefill and par.dp > 1 and any(g.ffn.kind != "dense" for g in model.layers)
        self.coster.staggered_prefill = self.graph_coster.staggered_prefill = staggered_prefill
        layout = checkpoint_layout(model, prec.weights)
        self.coster.attention_16bit = self.graph_coster.attention_16bit = layout.attention_16bit
        self.coster.expert_weight_bytes = self.graph_coster.expert_weight_bytes = layout.bytes_per_weight
        self._tbo = par.two_batch_overlap  # two-batch overlap: steps go through `_tbo_step` (execution.overlap)
        self._tbo_cache: dict[StepBatch, StepResult | None] = {}
        self._staged = self._pp > 1 or self._tbo  # fast_step and decode_pair go through time_energy
        self.provenance = self.cc.resolved.provenance
        self.provenance_note = self.cc.resolved.note

    def _aggregate(self, pairs) -> PartRecord:
        """The part record (per-operator totals and sums) of (cost, count) pairs. `OpTotal.add` and
        `PowerModel.op_power_w` inlined (the same operations in the same order: a first row is its cost added to
        zeros), since a prefill step spends a third of its time here. Rows are summed in place in the flat record
        (`where` says where each operator's row starts), an operator's limit kept as its name while all its time has
        that one limit (its time is then the row's: the same sums in the same order) and as a dict of times per
        limit (`split`, first seen first) from the first operator of it with another limit on."""
        flat = [0.0, 0.0, 0.0]  # time_s, roofline_s, busy_energy_j: set at the end
        where: dict[str, int] = {}
        split: dict[int, dict[str, float]] = {}
        time_s = roof = busy = 0.0
        power = self.power
        idle_w, swing_w, peak, bw, onchip_bw = (power.idle_w, power.tdp_w - power.idle_w, power.peak, power.bandwidth,
                                                power.onchip_bandwidth)
        for cost, count in pairs:
            ct, cflops, cbytes, conchip = cost.time_s, cost.flops, cost.bytes, cost.onchip_bytes
            t = ct * count
            r = cost.roofline_s * count
            at = where.get(cost.op)
            if at is None:
                where[cost.op] = len(flat)
                flat += (cost.op, 0.0 + t, 0.0 + cflops * count, 0.0 + cbytes * count, 0.0 + r, cost.source,
                         0.0 + conchip * count, cost.bound)
            else:  # op, time_s, flops, bytes, roofline_s, source, onchip_bytes, bound (see PartRecord)
                bound = cost.bound
                times = split.get(at)
                if times is not None:
                    times[bound] = times.get(bound, 0.0) + t
                elif bound != flat[at + 7]:  # a second limit: the first one's time is the row's so far
                    split[at] = {flat[at + 7]: flat[at + 1], bound: 0.0 + t}
                flat[at + 1] += t
                flat[at + 2] += cflops * count
                flat[at + 3] += cbytes * count
                flat[at + 6] += conchip * count
                flat[at + 4] += r
                if flat[at + 5] != cost.source:
                    flat[at + 5] = cost.source if not flat[at + 5] else "mixed"
            time_s += t
            roof += r
            if ct <= 0:
                busy += idle_w * t
                continue
            # max() and min() as conditionals (what they return: the first of equal values, NaN as they pass it)
            activity, other = cflops / (peak * ct), cbytes / (bw * ct)
            if other > activity:
                activity = other
            if conchip > 0.0:
                other = (cbytes + conchip) / (onchip_bw * ct)
                if other > activity:
                    activity = other
            busy += (idle_w + swing_w * (activity if activity < 1.0 else 1.0)) * t
        flat[0], flat[1], flat[2] = time_s, roof, busy
        for at, times in split.items():
            flat[at + 7] = tuple([x for pair in times.items() for x in pair])
        return tuple(flat)

    def _layers_part(self, num_tokens: int, num_decode: int) -> PartRecord:
        """Layer operators that depend only on token counts: `num_tokens` through every layer
        (`num_decode` of them decoding, which only MLA's absorbed projections care about)."""
        graphed = num_tokens == num_decode
        key = (num_tokens, num_decode if self._mla or graphed or self._moe_dp else -1)
        hit = self._layers_cache.get(key)
        if hit is not None:
            return hit
        prefill_tokens = num_tokens - num_decode
        canonical = StepBatch(((1, prefill_tokens, prefill_tokens),) if prefill_tokens > 0 else (), num_decode, 0.0)
        coster = self.graph_coster if graphed else self.coster
        ops = [(cost, count) for group, count in self._group_counts
               for cost in coster.layer_ops(group, canonical, with_core=False)]
        h = self.model.hidden_size
        ops.append((coster.elementwise("embedding", embedding_bytes(num_tokens, h, self._act_bytes, self._act_bytes)), 1.0))
        part = self._aggregate(ops)
        if len(self._layers_cache) < 200_000:
            self._layers_cache[key] = part
        return part

    def head_part(self, num_logits: int) -> StepPart:
        """Final norm, LM head and sampling of `num_logits` positions (speculative verify needs k + 1 per sequence)."""
        return StepPart.of(self._head_part(num_logits))

    def _head_part(self, num_logits: int, graphed: bool = False) -> PartRecord:
        """Final norm, LM head, logit gather and sampling of `num_logits` sequences (`graphed`: in a decode-only step)."""
        key = (num_logits, graphed)
        hit = self._head_cache.get(key)
        if hit is not None:
            return hit
        h, vocab = self.model.hidden_size, self.model.vocab_size
        coster = self.graph_coster if graphed else self.coster
        head = [
            coster.elementwise("norm", 2.0 * num_logits * h * self._act_bytes),
            coster.gemm("lm_head", num_logits, vocab // self.par.tp, h, weights=False, stored=True),
            coster.collective("lm_head_gather", "all_gather", self.par.tp, num_logits * vocab * 4.0),
            coster.elementwise("sampling", sampling_bytes(num_logits, vocab)),
        ]
        part = self._aggregate((cost, 1.0) for cost in head if cost is not None)
        if len(self._head_cache) < 200_000:
            self._head_cache[key] = part
        return part

    def _static_for(self, batch: StepBatch) -> tuple[PartRecord, PartRecord]:
        graphed = not batch.prefill and batch.num_decode > 0
        return self._layers_part(batch.num_tokens, batch.num_decode), self._head_part(batch.num_sequences, graphed)

    def _layers_fast(self, num_tokens: int, num_decode: int) -> tuple[float, float]:
        """(time, busy energy) of the layer part: the exact `_layers_part`, memoised on token counts."""
        p = self._layers_part(num_tokens, num_decode)
        return p[0], p[2]

    def _static_fast(self, num_tokens: int, num_decode: int, num_sequences: int, graphed: bool) -> tuple[float, float]:
        """(time, busy energy) of everything in a single-stage step but the attention cores: the layer part
        plus the head (`graphed`: a decode-only step), summed as `step` sums them (layers + head), memoised in
        one dict so the simulator's per-iteration call is one lookup."""
        key = (num_tokens, num_decode, num_sequences, graphed)
        hit = self._static_cache.get(key)
        if hit is not None:
            return hit
        lt, le = self._layers_fast(num_tokens, num_decode)
        head = self._head_part(num_sequences, graphed)
        hit = (lt + head[0], le + head[2])
        if len(self._static_cache) < 200_000:
            self._static_cache[key] = hit
        return hit

    def _core_part(self, batch: StepBatch) -> PartRecord:
        core = (self.coster if batch.prefill else self.graph_coster).core_attention_ops
        return self._aggregate((cost, count) for group, count in self._group_counts for cost in core(group.attention, batch))

    def step(self, batch: StepBatch) -> StepResult:
        """Time of one step in steady state: every micro-batch of the replica advancing one token.

        The batch runs as micro = min(pp, sequences) micro-batches in flight (`execution.pipeline`), each
        device running every micro-batch's stage once; the step lasts the busiest micro-batch's round trip, its
        time on each of the pp stages plus pp - 1 send/recv hops of its activations (the fill of an empty
        pipeline: `pipeline_fill`), and each device idles what its stages leave of it. The parts are the busiest
        micro-batch's pass through the busiest stage (and the hops, so that the parts x pp sum to the time).
        """
        key = _flat_key(batch.prefill, batch.num_decode, batch.decode_kv_len)
        hit = self._cache.get(key)
        if hit is not None:
            return StepResult(hit[0], hit[1], hit[2], hit[3], hit[4:])
        if self._tbo:
            hit = self._tbo_step(batch)
            if hit is not None:
                return hit
        pp = self._pp
        shapes = ((batch, 1),) if pp == 1 else micro_batches(batch, num_micro_batches(pp, batch.num_sequences))
        stage_s, busy_j, stages_s = -1.0, 0.0, 0.0
        for shape, count in shapes:
            records = self._stage_records(shape)
            layers, head, core = records
            # sum() over the three parts written out: CPython's float sum is 0.0 + each in order (the same bits)
            t = 0.0 + layers[0] + head[0] + core[0]
            busy_j += (0.0 + layers[2] + head[2] + core[2]) * count
            stages_s += t * count
            if t > stage_s:  # the busiest micro-batch (the first of equals)
                stage_s, mb, parts = t, shape, list(records)
                roof_s = 0.0 + layers[1] + head[1] + core[1]
        time_s = stage_s * pp  # the busiest micro-batch's round trip (pp = 1: the stage itself)
        if pp > 1:
            p2p = self.coster.collective("pp_send_recv", "send_recv", 2, mb.num_tokens * self.model.hidden_size * self._act_bytes)
            if p2p is not None:
                time_s += p2p.time_s * (pp - 1)
                parts.append(self._aggregate([(p2p, (pp - 1) / pp)]))  # parts x pp sum to the step's time
        energy = (busy_j + self.power.idle_w * max(0.0, time_s - stages_s)) * self._num_devices
        energy = self.power.to_wall(energy, time_s)
        result = StepResult(time_s, roof_s * pp, energy, batch.num_tokens, tuple(parts))
        if len(self._cache) < 100_000:
            self._cache[key] = (time_s, result.roofline_s, energy, batch.num_tokens, *parts)  # flat: see PartRecord
        return result

    def _stage_records(self, mb: StepBatch) -> tuple[PartRecord, PartRecord, PartRecord]:
        """The part records (layers, head, attention cores) of one micro-batch through the busiest stage."""
        core_kv = quantise_context(mb.decode_kv_len) if mb.num_decode else mb.decode_kv_len
        core_key = _flat_key(mb.prefill, mb.num_decode, core_kv)
        core = self._core_cache.get(core_key)
        if core is None:  # memoised on the quantised context: steps at nearby contexts share their attention part
            core = self._core_part(StepBatch(mb.prefill, mb.num_decode, core_kv) if mb.num_decode else mb)
            if len(self._core_cache) < 200_000:
                self._core_cache[core_key] = core
        layers, head = self._static_for(mb)
        return layers, head, core

    def pipeline_fill(self, batch: StepBatch) -> tuple[float, float]:
        """(time, energy) a step of `batch` takes beyond `step` when the pipeline starts empty (a static batch's
        prefill): the micro-batches enter the first stage one after another, so the last one's token comes the
        others' stage times later than a round trip (taken as the busiest entering last); every device idles
        through it. (0, 0) for one stage."""
        if self._pp == 1:
            return 0.0, 0.0
        times = [(self._stage_fast(shape)[0], count)
                 for shape, count in micro_batches(batch, num_micro_batches(self._pp, batch.num_sequences))]
        fill_s = max(0.0, sum(t * count for t, count in times) - max(t for t, _ in times))
        return fill_s, self.power.to_wall(self.power.idle_w * fill_s * self._num_devices, fill_s)

    def _stage_fast(self, mb: StepBatch) -> tuple[float, float]:
        """(time, busy energy) of one micro-batch through the busiest stage, from the part memos (what
        `_stage_records` sums, without the records)."""
        stage_s, busy = self._layers_fast(mb.num_tokens, mb.num_decode)
        head = self._head_part(mb.num_sequences, not mb.prefill)
        stage_s += head[0]
        busy += head[2]
        for group in mb.prefill:
            t, e = self._prefill_core(group)
            stage_s += t
            busy += e
        if mb.num_decode:
            t, e = self._decode_core(mb.num_decode, mb.decode_kv_len, not mb.prefill)
            stage_s += t
            busy += e
        return stage_s, busy

    def time_energy(self, batch: StepBatch) -> tuple[float, float]:
        """(time, energy) of a step without building a breakdown: the serving simulator's hot path.

        Same arithmetic as `step` (busiest micro-batch's round trip, idle share) but no result objects; every part
        is an exact memo of the function `step` evaluates (tests check equality).
        """
        if self._tbo:
            hit = self._tbo_step(batch)
            if hit is not None:
                return hit.time_s, hit.energy_j
        pp = self._pp
        if pp == 1:  # the stage itself, busy throughout (busy + idle x 0.0 is busy exactly)
            stage_s, busy = self._stage_fast(batch)
            return stage_s, self.power.to_wall(busy * self._num_devices, stage_s)
        stage_s, busy, stages_s = -1.0, 0.0, 0.0
        for shape, count in micro_batches(batch, num_micro_batches(pp, batch.num_sequences)):
            t, e = self._stage_fast(shape)
            busy += e * count
            stages_s += t * count
            if t > stage_s:
                stage_s, mb = t, shape
        time_s = stage_s * pp
        p2p = self.coster.collective("pp_send_recv", "send_recv", 2, mb.num_tokens * self.model.hidden_size * self._act_bytes)
        if p2p is not None:
            time_s += p2p.time_s * (pp - 1)
        energy = (busy + self.power.idle_w * max(0.0, time_s - stages_s)) * self._num_devices
        return time_s, self.power.to_wall(energy, time_s)

    def fast_step(self, prefill: tuple, num_decode: int, decode_kv_len: float) -> tuple[float, float]:
        """`time_energy` for single-stage plans, inlined without building a StepBatch: the simulator
        calls it once per iteration, and the inlining is worth ~20% of a simulation's wall time. Memoised on
        the work and the quantised context, the only way the result depends on the context (a serving run
        repeats a few thousand shapes: one lookup instead of three)."""
        if self._staged:
            return self.time_energy(StepBatch(prefill, num_decode, decode_kv_len))
        kv_len = decode_kv_len if num_decode else 0.0
        if kv_len >= 256.0:  # quantise_context, as _decode_core does it
            whole = int(kv_len)
            q = 1 << (whole.bit_length() - 8)
            kv_len = float((whole + (q >> 1)) // q * q)
        key = (prefill, num_decode, kv_len)
        hit = self._fast_step_cache.get(key)
        if hit is None:
            hit = self._fast_step_cold(prefill, num_decode, kv_len)
            if len(self._fast_step_cache) < 200_000:
                self._fast_step_cache[key] = hit
        return hit

    def _fast_step_cold(self, prefill: tuple, num_decode: int, kv_len: float) -> tuple[float, float]:
        """`fast_step` past its memo: the three part memos (`kv_len` already quantised)."""
        tokens, seqs = num_decode, num_decode
        t = busy = 0.0
        # the memo lookups of _prefill_core, _static_fast and _decode_core inlined (a call each saved per iteration)
        prefill_cores = self._prefill_core_cache
        for group in prefill:
            tokens += group[0] * group[1]
            seqs += group[0]
            hit = prefill_cores.get(group)
            gt, ge = hit if hit is not None else self._prefill_core(group)
            t += gt
            busy += ge
        graphed = not prefill
        hit = self._static_cache.get((tokens, num_decode, seqs, graphed))
        st, se = hit if hit is not None else self._static_fast(tokens, num_decode, seqs, graphed)
        t += st
        busy += se
        if num_decode:
            hit = self._decode_core_cache.get((num_decode, kv_len, graphed))
            dt, de = hit if hit is not None else self._decode_core(num_decode, kv_len, graphed)
            t += dt
            busy += de
        energy = busy * self._num_devices
        return t, (self.power.to_wall(energy, t) if self._at_wall else energy)

    def _prefill_core(self, group: tuple[int, int, int]) -> tuple[float, float]:
        """(time, busy energy) of the attention core of one prefill group (n, q_len, kv_len), memoised."""
        hit = self._prefill_core_cache.get(group)
        if hit is not None:
            return hit
        time_s, busy = self._core_sum(StepBatch((group,), 0, 0.0), self.coster)
        if len(self._prefill_core_cache) < 500_000:
            self._prefill_core_cache[group] = (time_s, busy)
        return time_s, busy

    def decode_pair(self, num_decode: int, kv_first: float, kv_last: float) -> tuple[float, float, float, float]:
        """(t_first, e_first, t_last, e_last) of the first and last step of a decode run: the
        token-count part is shared, only the attention core differs."""
        if self._staged:
            t0, e0 = self.time_energy(StepBatch((), num_decode, kv_first))
            t1, e1 = self.time_energy(StepBatch((), num_decode, kv_last))
            return t0, e0, t1, e1
        # memoised on the quantised contexts (quantise_context, inlined), the only way the pair depends on them
        kv_a, kv_b = kv_first, kv_last
        if kv_a >= 256.0:
            whole = int(kv_a)
            q = 1 << (whole.bit_length() - 8)
            kv_a = float((whole + (q >> 1)) // q * q)
        if kv_b >= 256.0:
            whole = int(kv_b)
            q = 1 << (whole.bit_length() - 8)
            kv_b = float((whole + (q >> 1)) // q * q)
        key = (num_decode, kv_a, kv_b)
        hit = self._decode_pair_cache.get(key)
        if hit is None:
            hit = self._decode_pair_cold(num_decode, kv_a, kv_b)
            if len(self._decode_pair_cache) < 200_000:
                self._decode_pair_cache[key] = hit
        return hit

    def _decode_pair_cold(self, num_decode: int, kv_a: float, kv_b: float) -> tuple[float, float, float, float]:
        """`decode_pair` past its memo (contexts already quantised): the static and decode-core memos."""
        hit = self._static_cache.get((num_decode, num_decode, num_decode, True))
        t, busy = hit if hit is not None else self._static_fast(num_decode, num_decode, num_decode, True)
        cores = self._decode_core_cache
        hit = cores.get((num_decode, kv_a, True))
        a_t, a_e = hit if hit is not None else self._decode_core(num_decode, kv_a, True)
        if kv_b != kv_a:
            hit = cores.get((num_decode, kv_b, True))
            b_t, b_e = hit if hit is not None else self._decode_core(num_decode, kv_b, True)
        else:
            b_t, b_e = a_t, a_e
        n = self._num_devices
        if not self._at_wall:  # to_wall is the identity then
            return t + a_t, (busy + a_e) * n, t + b_t, (busy + b_e) * n
        wall = self.power.to_wall
        return t + a_t, wall((busy + a_e) * n, t + a_t), t + b_t, wall((busy + b_e) * n, t + b_t)

    def _decode_core(self, num_decode: int, kv_len: float, graphed: bool) -> tuple[float, float]:
        """(time, busy energy) of the decode attention cores at this mean context (quantised as in `step`), memoised;
        `graphed`: the step has no prefill work (replayed as a CUDA graph)."""
        if kv_len >= 256.0:  # quantise_context, inlined: the simulator's hottest call
            whole = int(kv_len)
            q = 1 << (whole.bit_length() - 8)
            kv_len = float((whole + (q >> 1)) // q * q)
        key = (num_decode, kv_len, graphed)
        hit = self._decode_core_cache.get(key)
        if hit is not None:
            return hit
        time_s, busy = self._core_sum(StepBatch((), num_decode, kv_len), self.graph_coster if graphed else self.coster)
        if len(self._decode_core_cache) < 500_000:
            self._decode_core_cache[key] = (time_s, busy)
        return time_s, busy

    def decode_times(self, num_decode: int, kv_lens) -> tuple[np.ndarray, np.ndarray]:
        """`step(StepBatch((), num_decode, kv)).time_s` and `.energy_j` for every kv in `kv_lens`, vectorised over
        the contexts (only the attention cores depend on them); tests check equality with `step`."""
        if isinstance(kv_lens, np.ndarray):  # predict's sampled contexts
            kv = quantise_context_array(kv_lens)
            quantised = kv.tolist()
        else:
            quantised = quantise_contexts(kv_lens)
            kv = np.array(quantised)
        if self._tbo:  # context by context through `step`
            pairs = [self.time_energy(StepBatch((), num_decode, k)) for k in quantised]
            return np.array([p[0] for p in pairs], dtype=float), np.array([p[1] for p in pairs], dtype=float)
        pp, power = self._pp, self.power
        if pp == 1:  # stage x 1 and no bubble: (busy x 1 + idle x max(0, 0)) x devices is busy x devices exactly
            stage, busy = self._decode_stage_arrays(num_decode, kv, quantised)
            return stage, power.to_wall(busy * self._num_devices, stage)
        # the micro-batches of `micro_batches` for decodes alone: `extra` of them one decode more, listed first
        micro = num_micro_batches(pp, num_decode)
        lo, extra = divmod(num_decode, micro)
        shapes = ([(lo + 1, extra)] if extra else []) + [(lo, micro - extra)]  # lo >= 1: micro <= num_decode
        arrays = [(n, count, *self._decode_stage_arrays(n, kv, quantised)) for n, count in shapes]
        n0, _, stage, _ = arrays[0]
        stages = sum(a[2] * a[1] for a in arrays)
        busy = sum(a[3] * a[1] for a in arrays)
        time_s = stage * pp + self._p2p_s(n0) * (pp - 1)
        if len(arrays) > 1:  # the busiest micro-batch's round trip, the first of equals as `step` picks it
            n1, _, other, _ = arrays[1]
            time_s = np.where(other > stage, other * pp + self._p2p_s(n1) * (pp - 1), time_s)
        energy = (busy + power.idle_w * np.maximum(0.0, time_s - stages)) * self._num_devices
        return time_s, power.to_wall(energy, time_s)

    def _p2p_s(self, num_tokens: int) -> float:
        """One hop of `num_tokens` tokens' activations to the next stage (0 where the system has no such link)."""
        p2p = self.coster.collective("pp_send_recv", "send_recv", 2, num_tokens * self.model.hidden_size * self._act_bytes)
        return p2p.time_s if p2p is not None else 0.0

    def _decode_stage_arrays(self, n: int, kv: np.ndarray, quantised: list[float]) -> tuple[np.ndarray, np.ndarray]:
        """(time, busy energy) through the busiest stage of a decode micro-batch of `n` sequences at each (quantised)
        context, vectorised over the contexts: `_stage_fast` of each, summed as it sums its parts."""
        static_s, static_j = self._static_fast(n, n, n, True)  # layers + head, summed as step() sums its parts
        stage = busy = None  # arrays from the first group on (static + first core is the sum step() forms)
        power = self.power
        coster = self.graph_coster
        # kv_on_chip is monotone in the context: the shortest one says whether any context's KV stays on chip
        any_on_chip = coster.residency.kv_on_chip(n * min(quantised)) if quantised else False
        if self._decode_plans is None:
            self._decode_plans = [None if args is None else DecodeCorePlan.build(coster.cc, **args)
                                  for args in (coster.decode_core_args(g.attention) for g, _ in self._group_counts)]
        idle, swing = power.idle_w, power.tdp_w - power.idle_w
        for (group, count), plan in zip(self._group_counts, self._decode_plans):
            if plan is None or any_on_chip:
                # linear attention, DSA (not one decode-attention kernel) or a KV cache held on chip: context by context
                if stage is None:
                    stage, busy = np.full(len(kv), static_s), np.full(len(kv), static_j)
                for i, k in enumerate(kv):
                    for cost in coster.core_attention_ops(group.attention, StepBatch((), n, float(k))):
                        stage[i] += cost.time_s * count
                        busy[i] += power.op_power_w(cost) * cost.time_s * count
                continue
            t, flops, dram = plan.arrays(n, kv)
            activity = np.minimum(1.0, np.maximum(flops / (power.peak * t), dram / (power.bandwidth * t)))
            if stage is None:
                stage = static_s + t * count
                busy = static_j + (idle + swing * activity) * t * count
            else:
                stage += t * count
                busy += (idle + swing * activity) * t * count
        if stage is None:
            stage, busy = np.full(len(kv), static_s), np.full(len(kv), static_j)
        return stage, busy

    def _tbo_step(self, batch: StepBatch) -> StepResult | None:
        """A step under two-batch overlap (`execution.overlap`): each layer's operators costed on each micro-batch,
        the layers' time the critical path of the two micro-batches over compute and the all-to-all, embedding and
        LM head on the whole batch around it. None when the batch does not split (it then runs as one batch).
        The breakdown lists every operator's own time, so it sums to more than `time_s` by the hidden exchange; the
        energy is every operator's, less the idle floor of the hidden time (paid once while two operators overlap)."""
        key = StepBatch(batch.prefill, batch.num_decode, quantise_context(batch.decode_kv_len)) if batch.num_decode else batch
        if key in self._tbo_cache:
            return self._tbo_cache[key]
        halves = split_two(key)
        result = None
        if halves is not None:
            graphed = not key.prefill and key.num_decode > 0
            coster = self.graph_coster if graphed else self.coster
            layers, parts = [], []
            for group, count in self._group_counts:
                ops = [list(coster.layer_ops(group, half, with_core=True)) for half in halves]
                layers += [(layer_stages(ops[0]), layer_stages(ops[1]))] * round(count)
                parts.append(self._aggregate((cost, count) for half_ops in ops for cost in half_ops))
            h = self.model.hidden_size
            embed = coster.elementwise("embedding", embedding_bytes(key.num_tokens, h, self._act_bytes, self._act_bytes))
            parts += [self._aggregate([(embed, 1.0)]), self._head_part(key.num_sequences, graphed)]
            time_s = tbo_makespan(layers) + embed.time_s + parts[-1][0]  # part records: time_s, roofline_s, busy_j
            # overlapped operators share the chip's idle floor: the hidden time's idle power is paid once, not twice
            hidden_s = sum(p[0] for p in parts) - time_s
            busy_j = sum(p[2] for p in parts) - self.power.idle_w * hidden_s
            energy = self.power.to_wall(busy_j * self._num_devices, time_s)
            result = StepResult(time_s, sum(p[1] for p in parts), energy, key.num_tokens, tuple(parts))
        if len(self._tbo_cache) < 100_000:
            self._tbo_cache[key] = result
        return result

    def _core_sum(self, batch: StepBatch, coster: LayerCoster) -> tuple[float, float]:
        """(time, busy energy) of the attention cores of every layer for `batch`."""
        time_s = busy = 0.0
        op_power = self.power.op_power_w
        for group, count in self._group_counts:
            for cost in coster.core_attention_ops(group.attention, batch):
                t = cost.time_s * count
                time_s += t
                busy += op_power(cost) * t
        return time_s, busy


def _flat_key(prefill: tuple, num_decode: int, decode_kv_len: float) -> tuple:
    """A memo key of a step's work, flat (see PartRecord): what StepBatch equality compares (prefill groups are
    fixed-size triples, so spreading them is unambiguous)."""
    if len(prefill) == 1:
        n, q, kv = prefill[0]
        return num_decode, decode_kv_len, n, q, kv
    return (num_decode, decode_kv_len, *[x for group in prefill for x in group])


def quantise_context(kv_len: float) -> float:
    """The decode context a step is evaluated at: exact below 256 tokens, else rounded to the nearest multiple of
    1/256 of its power of two (an error below 0.4% of the context, far under the model's accuracy). Part of the
    step model itself, so `predict`, `simulate` and capacity evaluate one function and memos of it are exact."""
    if kv_len < 256.0:
        return kv_len
    whole = int(kv_len)
    step = 1 << max(0, whole.bit_length() - 8)
    return float((whole + step // 2) // step * step) if step > 1 else kv_len


def quantise_contexts(kv_lens) -> list[float]:
    """`quantise_context` of each context (the same arithmetic, inlined: `predict` quantises 33 per call)."""
    out = []
    for k in kv_lens:
        k = float(k)
        if k >= 256.0:
            whole = int(k)
            q = 1 << (whole.bit_length() - 8)
            k = float((whole + (q >> 1)) // q * q)
        out.append(k)
    return out


def quantise_context_array(kv_lens: np.ndarray) -> np.ndarray:
    """`np.array(quantise_contexts(kv_lens.tolist()))`, the same values (tested). Contexts of one octave at or above
    256 tokens (predict's common case: a decode phase rarely crosses a power of two) share one quantum and are
    rounded with integer numpy arithmetic, exact below 2^53 (int() and astype truncate alike for positive
    contexts), 2.5x faster than the element loop on predict's 33 contexts; other arrays (another octave, NaN,
    infinities) take the loop."""
    values = kv_lens.tolist()  # Python's min, max and sum of a short list: faster than numpy's reductions
    if values:
        lo, hi, total = min(values), max(values), sum(values)
        if 256.0 <= lo and hi < 9007199254740992.0 and total == total and int(lo).bit_length() == int(hi).bit_length():
            q = 1 << (int(lo).bit_length() - 8)  # a power of two: // q * q of a positive integer is & -q
            return ((kv_lens.astype(np.int64) + (q >> 1)) & -q).astype(np.float64)
    return np.array(quantise_contexts(values), dtype=np.float64)
