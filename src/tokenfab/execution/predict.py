"""A static batch of requests: prefill, then decode to the end (what `tokenfab predict` reports).

B requests of I prompt tokens and O output tokens, split evenly over the dp replicas.
The prefill step (all prompts at once) produces the first token: TTFT. Each of the
remaining O - 1 decode steps attends to one more cached token; their mean is TPOT. The
decode steps are evaluated at up to `MAX_DECODE_SAMPLES` contexts and integrated with
the trapezoid rule (exact for O - 1 <= MAX_DECODE_SAMPLES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from tokenfab.cost.bands import DEFAULT_BAND_LEVEL
from tokenfab.errors import InvalidInputError
from tokenfab.execution.bands import static_batch_bands
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.memory import MemoryFootprint, MemoryModel
from tokenfab.execution.speculative import SpeculativeModel
from tokenfab.execution.step import RECORD_HEAD, ROW_LEN, StepModel, StepResult, bound_items

MAX_DECODE_SAMPLES = 33


@dataclass
class PredictResult:
    """Latency, throughput, memory and energy of a static batch (the stable `predict` JSON)."""

    model: str
    hardware: str
    devices: int
    tp: int
    pp: int
    ep: int
    dp: int
    dtype: str
    weight_dtype: str
    kv_dtype: str
    batch: int
    input_len: int
    output_len: int
    ttft_s: float
    tpot_s: float
    e2e_s: float
    energy_j: float
    memory: MemoryFootprint
    efficiency_note: str
    speculative: dict | None = None
    band_level: float = DEFAULT_BAND_LEVEL
    # What the breakdown rows and the largest batch are worked out from on first access (see `DeferredFigures`)
    deferred: DeferredFigures | None = field(default=None, repr=False, compare=False)
    _rows: list[dict] | None = field(default=None, init=False, repr=False, compare=False)
    _max_batch: int | None = field(default=None, init=False, repr=False, compare=False)
    _source: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def breakdown(self) -> list[dict]:
        """Per-operator rows of the prefill and decode phases ({op, phase, time_s, bound, flops, bytes, mfu, mbu,
        source}), longest first within each phase. Built on first access and kept: a caller that reads only the
        headline figures (a sweep, a search screen) does not pay for them, and every later access sees the same
        rows (tests check them equal to rows built at once)."""
        if self._rows is None:
            self._rows = self.deferred.rows() if self.deferred is not None else []
        return self._rows

    @property
    def efficiency_source(self) -> str:
        """The efficiency source behind most of the predicted time (see `dominant_source`)."""
        if self._source is None:
            default = self.deferred.sm.provenance if self.deferred is not None else "analytic"
            self._source = dominant_source(self.breakdown, default)
        return self._source

    def __getstate__(self) -> dict:
        """Pickled with its deferred figures worked out: a result sent to another process carries no step model."""
        self.efficiency_source, self.max_batch_that_fits  # noqa: B018 (works them out and keeps them)
        return {**self.__dict__, "deferred": None}

    @property
    def max_batch_that_fits(self) -> int:
        """Largest static batch of these lengths (over all replicas) whose memory fits (`MemoryModel.max_batch`),
        worked out on first access and kept."""
        if self._max_batch is None:
            self._max_batch = self.deferred.max_batch() if self.deferred is not None else 0
        return self._max_batch

    def to_dict(self) -> dict:
        decode_s = self.e2e_s - self.ttft_s
        out_tokens = self.batch * self.output_len
        out = {
            "model": self.model, "hardware": self.hardware, "devices": self.devices,
            "tp": self.tp, "pp": self.pp, "ep": self.ep, "dp": self.dp,
            "dtype": self.dtype, "weight_dtype": self.weight_dtype, "kv_dtype": self.kv_dtype,
            "batch": self.batch, "input_len": self.input_len, "output_len": self.output_len,
            "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "e2e_s": self.e2e_s,
            "prefill_tokens_per_s": self.batch * self.input_len / self.ttft_s if self.ttft_s > 0 else 0.0,
            "decode_tokens_per_s": self.batch * (self.output_len - 1) / decode_s if decode_s > 0 else 0.0,
            "throughput_tokens_per_s": out_tokens / self.e2e_s if self.e2e_s > 0 else 0.0,
            "energy_j_per_token": self.energy_j / out_tokens if out_tokens else 0.0,
            "energy_j": self.energy_j,
            "fits": self.fits,
            "max_batch_that_fits": self.max_batch_that_fits,
            "memory_bytes": self.memory.to_dict(),
            "efficiency_source": self.efficiency_source,
            "efficiency_note": self.efficiency_note,
            "breakdown": [dict(r) for r in self.breakdown],
            **({"speculative": self.speculative} if self.speculative is not None else {}),
        }
        return static_batch_bands(out, self.band_level)


_SAMPLE_INDEX = np.arange(MAX_DECODE_SAMPLES, dtype=float)


def decode_contexts(input_len: int, output_len: int) -> np.ndarray:
    """KV lengths of the decode steps to evaluate (step i attends to input_len + i positions).

    Beyond `MAX_DECODE_SAMPLES` steps, `np.linspace(input_len + 1, input_len + steps, MAX_DECODE_SAMPLES)` written
    out as numpy computes it (index x (stop - start) / (num - 1) + start, the last set to stop): the same bits
    without linspace's argument handling, a tenth of the decode phase's cost (tests check equality)."""
    steps = output_len - 1
    if steps <= 0:
        return np.array([], dtype=float)
    if steps <= MAX_DECODE_SAMPLES:
        return input_len + np.arange(1, steps + 1, dtype=float)
    start, stop = float(input_len + 1), float(input_len + steps)
    y = _SAMPLE_INDEX * ((stop - start) / (MAX_DECODE_SAMPLES - 1))
    y += start
    y[-1] = stop
    return y


def _breakdown_rows(result: StepResult, phase: str, scale: float, cc_peak: float, bw: float) -> list[dict]:
    """Rows of `result.breakdown` (the per-operator merge of the step's parts), longest first, each scaled by
    `scale`. Built from the part records' rows directly: the merge's sums in its order (a first row copied as
    0.0 + x, later rows added part by part, bounds by summed time), without building the merged OpTotal copies,
    which took a sixth of a `predict` call; each row's dict is made as its operator is merged and the rows are
    sorted by the unscaled time, descending (a stable sort, as the ascending sort on minus the time it replaces);
    tests check equality with the rows of `result.breakdown`."""
    by_name: dict[str, tuple | list[tuple]] = {}
    for record in result.part_records:
        for i in range(RECORD_HEAD, len(record), ROW_LEN):
            row = record[i:i + ROW_LEN]  # op, time_s, flops, bytes, roofline_s, source, onchip_bytes, bounds
            name = row[0]
            same = by_name.get(name)
            if same is None:  # most names occur in one part: the row itself, no list
                by_name[name] = row
            elif type(same) is list:
                same.append(row)
            else:
                by_name[name] = [same, row]
    keyed = []
    for name, same in by_name.items():
        if type(same) is not list:
            bounds = same[7]
            bound = bounds if type(bounds) is str else _bound(bound_items(same[1], bounds))
            time_s, flops, nbytes, source = 0.0 + same[1], 0.0 + same[2], 0.0 + same[3], same[5]
        else:
            first = same[0]
            time_s, flops, nbytes, source = 0.0 + first[1], 0.0 + first[2], 0.0 + first[3], first[5]
            bound_time = {b: 0.0 + t for b, t in bound_items(first[1], first[7])}
            for row in same[1:]:
                time_s += row[1]
                flops += row[2]
                nbytes += row[3]
                for b, t in bound_items(row[1], row[7]):
                    bound_time[b] = bound_time.get(b, 0.0) + t
                source = row[5] if not source or source == row[5] else "mixed"
            bound = _bound(list(bound_time.items()))
        t = time_s * scale
        f, b = flops * scale, nbytes * scale
        keyed.append((time_s, {
            "op": name, "phase": phase, "time_s": t, "bound": bound, "flops": f, "bytes": b,
            "mfu": f / (cc_peak * t) if t > 0 else 0.0,
            "mbu": b / (bw * t) if t > 0 and bound != "network" else 0.0,
            "source": source,
        }))
    keyed.sort(key=_first, reverse=True)
    return list(map(_second, keyed))


_first, _second = itemgetter(0), itemgetter(1)


def _bound(bound_time: list[tuple[str, float]]) -> str:
    """`OpTotal.bound` of (bound, time) pairs: the first limit with the most time (the only one, commonly)."""
    if len(bound_time) == 1:
        return bound_time[0][0]
    return max(bound_time, key=_time_of)[0] if bound_time else "memory"


def _time_of(pair: tuple[str, float]) -> float:
    return pair[1]


_WEIGHED_SOURCES = frozenset(("fitted", "inherited", "generic"))


def dominant_source(rows: list[dict], default: str) -> str:
    """The efficiency source behind most of the predicted time. A chip with a partial profile of its
    own (H20: only FP8 block GEMMs and attention measured) runs most bf16 kernels on inherited
    curves, and the result must say so rather than 'fitted'."""
    weight: dict[str, float] = {}
    for r in rows:
        source = r["source"]
        if source in _WEIGHED_SOURCES:
            weight[source] = weight.get(source, 0.0) + r["time_s"]
    return max(weight, key=weight.get) if weight else default


def estimate_static_batch(sm: StepModel, mem: MemoryModel, batch: int, input_len: int, output_len: int,
                          spec: SpeculativeModel | None = None) -> PredictResult:
    """Predict a static batch on the deployment described by `sm` (see module doc); with `spec`, decoding
    runs speculative iterations (see `tokenfab.execution.speculative`)."""
    if batch < 1 or input_len < 1 or output_len < 1:
        raise InvalidInputError(f"batch, input length and output length must be >= 1 (got {batch}, {input_len}, {output_len})")
    if input_len + output_len > sm.model.max_position_embeddings:
        raise InvalidInputError(
            f"input {input_len} + output {output_len} tokens exceed the {sm.model.max_position_embeddings}-token context of {sm.model.name}"
        )
    par = sm.par
    per_replica = math.ceil(batch / par.dp)
    prefill = sm.step(StepBatch(prefill=((per_replica, input_len, input_len),)))
    contexts = decode_contexts(input_len, output_len)
    steps = output_len - 1
    ttft, prefill_e = prefill.time_s, prefill.energy_j
    if par.pp > 1:  # the batch's prompts enter an empty pipeline: its last micro-batch waits out the fill
        fill_s, fill_j = sm.pipeline_fill(StepBatch(prefill=((per_replica, input_len, input_len),)))
        ttft, prefill_e = ttft + fill_s, prefill_e + fill_j
    if spec is None:
        times, energies = sm.decode_times(per_replica, contexts) if len(contexts) else ([], [])
        mean_t, mean_e = _trapezoid_means(contexts, times, energies)
        decode_s, decode_j = steps * mean_t, steps * mean_e
    else:
        draft_prefill = spec.drafter.step(StepBatch(prefill=((per_replica, input_len, input_len),)))
        ttft, prefill_e = ttft + draft_prefill.time_s, prefill_e + draft_prefill.energy_j
        its = [spec.iteration(per_replica, float(c)) for c in contexts]
        it_t, it_e = _trapezoid_means(contexts, [i[0] for i in its], [i[1] for i in its])
        decode_s, decode_j = steps / spec.tokens_per_iteration * it_t, steps / spec.tokens_per_iteration * it_e
    footprint = mem.footprint(per_replica * (input_len + output_len), per_replica * input_len, per_replica)
    mid_ctx = float(contexts[len(contexts) // 2]) if len(contexts) else None
    deferred = DeferredFigures(sm, mem, prefill, per_replica, input_len, output_len, mid_ctx, decode_s, spec)
    info = None
    if len(contexts) and spec is not None:
        footprint = _with_drafter(footprint, spec, per_replica * (input_len + output_len))
        info = {"method": spec.spec.method, "num_spec_tokens": spec.spec.num_spec_tokens,
                "acceptance_frac": spec.spec.acceptance_frac, "acceptance_source": spec.spec.acceptance_source,
                "draft_model": spec.drafter_spec.name, "tokens_per_iteration": spec.tokens_per_iteration,
                "num_iterations": steps / spec.tokens_per_iteration}
    prec = sm.prec
    return PredictResult(
        model=sm.model.name, hardware=sm.system.chip.name, devices=par.num_devices, tp=par.tp, pp=par.pp, ep=par.ep,
        dp=par.dp, dtype=prec.dtype, weight_dtype=prec.weights, kv_dtype=prec.kv, batch=batch, input_len=input_len,
        output_len=output_len, ttft_s=ttft, tpot_s=decode_s / steps if steps else 0.0, e2e_s=ttft + decode_s,
        energy_j=prefill_e + decode_j, memory=footprint, efficiency_note=sm.provenance_note, speculative=info,
        deferred=deferred,
    )


@dataclass(slots=True)
class DeferredFigures:
    """What a static batch's breakdown rows and largest batch are worked out from when first asked for
    (`PredictResult.breakdown`, `.max_batch_that_fits`): the prefill step as predicted, what the decode rows need
    (the decode step at the middle sampled context, scaled to the phase's time; or the speculative verify and draft
    steps), and the memory model. Step and memory models are pure functions (memoised), so figures worked out later
    are the figures `estimate_static_batch` would have worked out at once."""

    sm: StepModel
    mem: MemoryModel
    prefill: StepResult
    num_sequences: int  # per replica
    input_len: int
    output_len: int
    mid_context: float | None  # None: no decode step (one output token)
    decode_s: float
    spec: SpeculativeModel | None

    def rows(self) -> list[dict]:
        sm = self.sm
        peak, bw = sm.cc.peak(sm.prec.dtype), sm.cc.bandwidth_bytes_per_s
        rows = _breakdown_rows(self.prefill, "prefill", 1.0, peak, bw)
        if self.mid_context is None:
            return rows
        if self.spec is None:
            mid = sm.step(StepBatch(num_decode=self.num_sequences, decode_kv_len=self.mid_context))
            scale = self.decode_s / mid.time_s if mid.time_s > 0 else 0.0
            return rows + _breakdown_rows(mid, "decode", scale, peak, bw)
        steps = self.output_len - 1
        return rows + _speculative_rows(sm, self.spec, self.num_sequences, self.mid_context, steps, peak, bw)

    def max_batch(self) -> int:
        return self.mem.max_batch(self.input_len, self.output_len, self.sm.par.dp)


def _trapezoid_means(contexts: np.ndarray, times, energies) -> tuple[float, float]:
    """Context-weighted means of per-step time and energy over the sampled decode contexts.

    `np.trapezoid(y, contexts)` of both, written out as numpy computes it (the same operations, so the same
    bits: a row of a contiguous 2-D array sums along its last axis as the 1-D array would) and evaluated on both
    series at once, the context differences taken once: a decode phase's numpy calls on its ~33 samples cost
    more in call overhead than in arithmetic (tests check equality with np.trapezoid's form)."""
    n = len(times)
    if n == 0:
        return 0.0, 0.0
    if n == 1:
        return float(times[0]), float(energies[0])
    span = contexts[-1] - contexts[0]
    d = contexts[1:] - contexts[:-1]  # np.diff
    both = np.concatenate((times, energies)).reshape(2, n)
    means = (d * (both[:, 1:] + both[:, :-1]) / 2.0).sum(-1) / span
    return float(means[0]), float(means[1])


def _speculative_rows(sm: StepModel, spec: SpeculativeModel, seqs: int, ctx: float, steps: int,
                      peak: float, bw: float) -> list[dict]:
    """Breakdown of the speculative decode phase: the verify step ('verify') and the drafter ('draft')."""
    k = spec.spec.num_spec_tokens
    iterations = steps / spec.tokens_per_iteration
    c = int(round(ctx))
    verify = sm.step(StepBatch(prefill=((seqs, k + 1, c + k + 1),)))
    draft = spec.drafter.step(StepBatch(num_decode=seqs, decode_kv_len=ctx))
    return (_breakdown_rows(verify, "verify", iterations, peak, bw)
            + _breakdown_rows(draft, "draft", iterations * k, peak, bw))


def _with_drafter(fp: MemoryFootprint, spec: SpeculativeModel, tokens_in_cache: float) -> MemoryFootprint:
    """The footprint plus the drafter's weights and its KV cache."""
    return MemoryFootprint(fp.weights_bytes + spec.extra_weights_bytes(),
                           fp.kv_cache_bytes + tokens_in_cache * spec.extra_kv_bytes_per_token(),
                           fp.activations_bytes, fp.capacity_bytes, fp.usable_bytes)
