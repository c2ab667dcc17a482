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

import numpy as np

from tokenfab.cost.bands import DEFAULT_BAND_LEVEL
from tokenfab.errors import InvalidInputError
from tokenfab.execution.bands import static_batch_bands
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.memory import MemoryFootprint, MemoryModel
from tokenfab.execution.step import OpTotal, StepModel

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
        }
        return static_batch_bands(out, self.band_level)


def decode_contexts(input_len: int, output_len: int) -> np.ndarray:
    """KV lengths of the decode steps to evaluate (step i attends to input_len + i positions)."""
    steps = output_len - 1
    if steps <= 0:
        return np.array([], dtype=float)
    if steps <= MAX_DECODE_SAMPLES:
        return input_len + np.arange(1, steps + 1, dtype=float)
    return np.linspace(input_len + 1, input_len + steps, MAX_DECODE_SAMPLES)


def _breakdown_rows(totals: dict[str, OpTotal], phase: str, scale: float, cc_peak: float, bw: float) -> list[dict]:
    rows = []
    for o in sorted(totals.values(), key=lambda r: -r.time_s):
        t = o.time_s * scale
        rows.append({
            "op": o.op, "phase": phase, "time_s": t, "bound": o.bound, "flops": o.flops * scale, "bytes": o.bytes * scale,
            "mfu": o.flops * scale / (cc_peak * t) if t > 0 else 0.0,
            "mbu": o.bytes * scale / (bw * t) if t > 0 and o.bound != "network" else 0.0,
            "source": o.source,
        })
    return rows


def estimate_static_batch(sm: StepModel, mem: MemoryModel, batch: int, input_len: int, output_len: int) -> PredictResult:
    """Predict a static batch on the deployment described by `sm` (see module doc)."""
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
    decode_steps = [sm.step(StepBatch(num_decode=per_replica, decode_kv_len=float(c))) for c in contexts]
    steps = output_len - 1
    if decode_steps:
        times = np.array([s.time_s for s in decode_steps])
        energies = np.array([s.energy_j for s in decode_steps])
        mean_t = float(np.trapezoid(times, contexts) / (contexts[-1] - contexts[0])) if len(times) > 1 else float(times[0])
        mean_e = float(np.trapezoid(energies, contexts) / (contexts[-1] - contexts[0])) if len(times) > 1 else float(energies[0])
    else:
        mean_t = mean_e = 0.0
    ttft = prefill.time_s
    e2e = ttft + steps * mean_t
    footprint = mem.footprint(per_replica * (input_len + output_len), per_replica * input_len, per_replica)
    peak, bw = sm.cc.peak(sm.prec.dtype), sm.cc.bandwidth_bytes_per_s
    rows = _breakdown_rows(prefill.breakdown, "prefill", 1.0, peak, bw)
    if decode_steps:
        mid = decode_steps[len(decode_steps) // 2]
        scale = steps * mean_t / mid.time_s if mid.time_s > 0 else 0.0
        rows += _breakdown_rows(mid.breakdown, "decode", scale, peak, bw)
    prec = sm.prec
    return PredictResult(
        model=sm.model.name, hardware=sm.system.chip.name, devices=par.num_devices, tp=par.tp, pp=par.pp, ep=par.ep,
        dp=par.dp, dtype=prec.dtype, weight_dtype=prec.weights, kv_dtype=prec.kv, batch=batch, input_len=input_len,
        output_len=output_len, ttft_s=ttft, tpot_s=mean_t, e2e_s=e2e, energy_j=prefill.energy_j + steps * mean_e,
        memory=footprint, max_batch_that_fits=mem.max_batch(input_len, output_len, par.dp),
        efficiency_source=sm.provenance, efficiency_note=sm.provenance_note, breakdown=rows,
    )
