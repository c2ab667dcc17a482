"""One engine step of a model under a parallel plan on a system: time, work, energy, breakdown.

`StepModel` is built once per (model, system, plan, formats) and then answers many
step queries; the serving simulator and `predict` both go through it. A step's time is
the pipeline's: with `pp` stages and the replica's batch split into micro-batches,
the first micro-batch crosses all stages and each further one adds the slowest stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infersim.cost.chip_cost import ChipCost, chip_cost
from infersim.cost.elementwise import embedding_bytes, sampling_bytes
from infersim.cost.result import OpCost
from infersim.execution.config import (
    ParallelConfig, PrecisionConfig, check_parallelism, check_precision, layers_per_stage,
)
from infersim.execution.layers import LayerCoster, StepBatch
from infersim.execution.power import PowerModel
from infersim.hardware.spec import SystemSpec
from infersim.units import bytes_per_element
from infersim.workload.spec import ModelSpec


@dataclass(slots=True)
class OpTotal:
    """One row of a step's breakdown: an operator summed over the layers of a device."""

    op: str
    time_s: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0
    roofline_s: float = 0.0
    source: str = ""
    _bound_time: dict[str, float] = field(default_factory=dict)

    def add(self, cost: OpCost, count: float) -> None:
        t = cost.time_s * count
        self.time_s += t
        self.flops += cost.flops * count
        self.bytes += cost.bytes * count
        self.roofline_s += cost.roofline_s * count
        self._bound_time[cost.bound] = self._bound_time.get(cost.bound, 0.0) + t
        if self.source != cost.source:
            self.source = cost.source if not self.source else "mixed"

    @property
    def bound(self) -> str:
        """The limit that accounts for most of this operator's time."""
        return max(self._bound_time, key=self._bound_time.__getitem__) if self._bound_time else "memory"


@dataclass(slots=True)
class StepPart:
    """Operators of (part of) one pipeline stage, aggregated: per-op totals and sums."""

    totals: dict[str, OpTotal]
    time_s: float
    roofline_s: float
    busy_energy_j: float  # one device, one pass of these operators


@dataclass(slots=True)
class StepResult:
    """Time and work of one step on the busiest device of one replica."""

    time_s: float
    roofline_s: float
    energy_j: float  # all devices of the deployment during this step
    num_tokens: int
    parts: tuple[StepPart, ...]

    @property
    def breakdown(self) -> dict[str, OpTotal]:
        """Per-operator totals of one pass through the busiest stage (merged on demand)."""
        merged: dict[str, OpTotal] = {}
        for part in self.parts:
            for name, row in part.totals.items():
                into = merged.setdefault(name, OpTotal(name))
                into.time_s += row.time_s
                into.flops += row.flops
                into.bytes += row.bytes
                into.roofline_s += row.roofline_s
                for bound, t in row._bound_time.items():
                    into._bound_time[bound] = into._bound_time.get(bound, 0.0) + t
                into.source = row.source if not into.source or into.source == row.source else "mixed"
        return merged

    @property
    def flops(self) -> float:
        return sum(o.flops for p in self.parts for o in p.totals.values())

    @property
    def bytes(self) -> float:
        return sum(o.bytes for p in self.parts for o in p.totals.values())


class StepModel:
    """Answers 'how long does this step take' for one deployment.

    Everything but the attention core depends only on token counts, so it is aggregated once
    per (prefill shape, decode count) and reused across steps that differ only in context length
    (the common case in decoding and in the serving simulator).
    """

    def __init__(self, model: ModelSpec, system: SystemSpec, par: ParallelConfig, prec: PrecisionConfig,
                 profile_path: str | None = None):
        check_precision(system.chip, prec)
        check_parallelism(model, system, par)
        self.model, self.system, self.par, self.prec = model, system, par, prec
        self.cc: ChipCost = chip_cost(system.chip, profile_path)
        self.coster = LayerCoster(self.cc, system, par, prec, model.hidden_size)
        self.power = PowerModel(system.chip, self.cc)
        self.stage_layers = layers_per_stage(model.num_layers, par.pp)
        self.layer_fraction = self.stage_layers / model.num_layers  # share of each group on the busiest stage
        self._group_counts = [(g, g.num_layers * self.layer_fraction) for g in model.layers]
        self._act_bytes = bytes_per_element(prec.activations)
        self._cache: dict[StepBatch, StepResult] = {}
        self._static_cache: dict[tuple, StepPart] = {}
        self.provenance = self.cc.resolved.provenance
        self.provenance_note = self.cc.resolved.note

    def _aggregate(self, pairs) -> StepPart:
        totals: dict[str, OpTotal] = {}
        time_s = roof = busy = 0.0
        op_power = self.power.op_power_w
        for cost, count in pairs:
            row = totals.get(cost.op)
            if row is None:
                row = totals[cost.op] = OpTotal(cost.op)
            row.add(cost, count)
            t = cost.time_s * count
            time_s += t
            roof += cost.roofline_s * count
            busy += op_power(cost) * t
        return StepPart(totals, time_s, roof, busy)

    def _static_part(self, batch: StepBatch) -> StepPart:
        key = (batch.prefill, batch.num_decode)
        hit = self._static_cache.get(key)
        if hit is not None:
            return hit
        ops: list[tuple[OpCost, float]] = []
        for group, count in self._group_counts:
            ops.extend((cost, count) for cost in self.coster.layer_ops(group, batch, with_core=False))
        t, h, vocab = batch.num_tokens, self.model.hidden_size, self.model.vocab_size
        logits = sum(n for n, _, _ in batch.prefill) + batch.num_decode
        head = [
            self.coster.elementwise("embedding", embedding_bytes(t, h, self._act_bytes, self._act_bytes)),
            self.coster.elementwise("norm", 2.0 * logits * h * self._act_bytes),
            self.coster.gemm("lm_head", logits, vocab // self.par.tp, h, weights=False),
            self.coster.collective("lm_head_gather", "all_gather", self.par.tp, logits * vocab * 4.0),
            self.coster.elementwise("sampling", sampling_bytes(logits, vocab)),
        ]
        ops.extend((cost, 1.0) for cost in head if cost is not None)
        part = self._aggregate(ops)
        if len(self._static_cache) < 100_000:
            self._static_cache[key] = part
        return part

    def _core_part(self, batch: StepBatch) -> StepPart:
        core = self.coster.core_attention_ops
        return self._aggregate((cost, count) for group, count in self._group_counts for cost in core(group.attention, batch))

    def step(self, batch: StepBatch) -> StepResult:
        """Time of one step: all micro-batches of the replica through all pipeline stages.

        The busiest stage runs once per micro-batch; the first micro-batch also crosses the
        other pp - 1 stages (the pipeline fill), each hop adding a send/recv of activations.
        """
        hit = self._cache.get(batch)
        if hit is not None:
            return hit
        pp = self.par.pp
        micro = min(pp, max(1, batch.num_sequences)) if pp > 1 else 1
        mb = _split(batch, micro)
        parts = [self._static_part(mb), self._core_part(mb)]
        stage_s = parts[0].time_s + parts[1].time_s
        roof_s = parts[0].roofline_s + parts[1].roofline_s
        busy_j = (parts[0].busy_energy_j + parts[1].busy_energy_j) * micro
        time_s = stage_s * (micro + pp - 1)
        if pp > 1:
            p2p = self.coster.collective("pp_send_recv", "send_recv", 2, mb.num_tokens * self.model.hidden_size * self._act_bytes)
            if p2p is not None:
                time_s += p2p.time_s * (pp - 1)
                parts.append(self._aggregate([(p2p, (pp - 1) / (micro + pp - 1))]))
        energy = (busy_j + self.power.idle_w * max(0.0, time_s - stage_s * micro)) * self.par.num_devices
        result = StepResult(time_s, roof_s * (micro + pp - 1), energy, batch.num_tokens, tuple(parts))
        if len(self._cache) < 100_000:
            self._cache[batch] = result
        return result


def _split(batch: StepBatch, parts: int) -> StepBatch:
    """One of `parts` equal micro-batches (sequences rounded up)."""
    if parts <= 1:
        return batch
    prefill = tuple((-(-n // parts), q, kv) for n, q, kv in batch.prefill)
    return StepBatch(prefill, -(-batch.num_decode // parts), batch.decode_kv_len)
