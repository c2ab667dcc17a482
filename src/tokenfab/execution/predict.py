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
    max_batch_that_fits: int
    efficiency_source: str
    efficiency_note: str
    breakdown: list[dict] = field(default_factory=list)
    speculative: dict | None = None
    band_level: float = DEFAULT_BAND_LEVEL

    @property
    def fits(self) -> bool:
        return self.memory.fits

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
    peak, bw = sm.cc.peak(sm.prec.dtype), sm.cc.bandwidth_bytes_per_s
    rows = _breakdown_rows(prefill, "prefill", 1.0, peak, bw)
    info = None
    if len(contexts) and spec is None:
        mid = sm.step(StepBatch(num_decode=per_replica, decode_kv_len=float(contexts[len(contexts) // 2])))
        scale = decode_s / mid.time_s if mid.time_s > 0 else 0.0
        rows += _breakdown_rows(mid, "decode", scale, peak, bw)
    elif len(contexts):
        rows += _speculative_rows(sm, spec, per_replica, float(contexts[len(contexts) // 2]), steps, peak, bw)
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
        energy_j=prefill_e + decode_j,
        memory=footprint, max_batch_that_fits=mem.max_batch(input_len, output_len, par.dp),
        efficiency_source=dominant_source(rows, sm.provenance), efficiency_note=sm.provenance_note, breakdown=rows,
        speculative=info,
    )


def _trapezoid_means(contexts: np.ndarray, times, energies) -> tuple[float, float]:
    """Context-weighted means of per-step time and energy over the sampled decode contexts.

    `np.trapezoid(y, contexts)` of both, written out as numpy computes it (the same operations, so the same
    bits) to take the context differences once."""
    if len(times) == 0:
        return 0.0, 0.0
    if len(times) == 1:
        return float(times[0]), float(energies[0])
    span = contexts[-1] - contexts[0]
    d = contexts[1:] - contexts[:-1]  # np.diff
    y, e = np.asarray(times, dtype=float), np.asarray(energies, dtype=float)
    return float((d * (y[1:] + y[:-1]) / 2.0).sum(-1) / span), float((d * (e[1:] + e[:-1]) / 2.0).sum(-1) / span)


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
