"""Screening: each candidate's predicted goodput, latency, power and cost from the step model.

Aggregated candidates get their replica's best steady state within the SLO from
`search.capacity`; the replica count is the fewest that carry the traffic (rate / requests per
second of one replica, or clients / batch of one replica). P/D candidates get a prefill pool
(whole prompts packed into the token budget, as many per step as fit) and a decode pool (the
largest decode batch within the TPOT target and the KV cache), each sized to the rate.
Power at part load is the capacity's power for the busy share plus idle power for the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenfab.cost.bands import DEFAULT_BAND_LEVEL, add_bands, composite_band
from tokenfab.errors import TokenfabError
from tokenfab.execution.bands import SERVING_TPOT, SERVING_TTFT, step_parts
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.layers import StepBatch
from tokenfab.hardware.catalog import load_chip
from tokenfab.hardware.prices import price_cny
from tokenfab.search.capacity import EngineLimits, estimate_steady_state, max_batch_for
from tokenfab.search.plan_capacity import _memory_model, _step_model, capacity_for, limits_for
from tokenfab.search.space import Candidate, SearchSpec


@dataclass(frozen=True, slots=True)
class Traffic:
    """The traffic the screen sizes deployments for (a trace is reduced to its mean rate)."""

    rate: float | None
    concurrency: int | None
    input_len: int
    output_len: int


def _idle_w(chip: str, devices: int) -> float:
    return load_chip(chip).power.idle_w.value * devices


def _limits(c: Candidate, tp: int | None = None, hw: str | None = None) -> EngineLimits:
    return limits_for(c.engine, hw or c.hardware, tp or c.tp, c.max_num_seqs, c.max_batched_tokens, model=c.model, pp=c.pp)


def screen(c: Candidate, spec: SearchSpec, traffic: Traffic) -> dict:
    """Predicted figures of one candidate, or {'feasible': False, 'reason': ...}."""
    try:
        return (_screen_pd if c.disaggregated else _screen_aggregated)(c, spec, traffic)
    except TokenfabError as exc:
        return {"feasible": False, "reason": str(exc).splitlines()[0]}


def _screen_aggregated(c: Candidate, spec: SearchSpec, t: Traffic) -> dict:
    closed = t.concurrency is not None
    cap = capacity_for(c.model, c.hardware, c.tp, c.pp, c.ep, c.dtype, c.weight_dtype, c.kv_dtype,
                       input_len=t.input_len, output_len=t.output_len, ttft_s=spec.slo_ttft_s, tpot_s=spec.slo_tpot_s,
                       percentile=spec.slo_percentile, engine=c.engine, max_num_seqs=c.max_num_seqs,
                       max_batched_tokens=c.max_batched_tokens, closed_loop=closed)
    s = cap.state
    if closed:
        replicas = math.ceil(t.concurrency / s.batch)
        per = min(s.batch, math.ceil(t.concurrency / replicas))
        op = estimate_steady_state(_step_model(c.model, c.hardware, *_plan(c)), per, t.input_len, t.output_len,
                                   _limits(c), 0.0)
        goodput, util, ttft, tpot = replicas * op.tokens_per_s, 1.0, op.ttft_s, op.tpot_s
        power = replicas * op.power_w
    else:
        replicas = math.ceil(t.rate / s.requests_per_s)
        util = t.rate / (replicas * s.requests_per_s)
        goodput, ttft, tpot = t.rate * t.output_len, s.ttft_s, s.tpot_s
        power = replicas * (util * s.power_w + (1 - util) * _idle_w(c.hardware, c.devices_per_replica))
    chips = replicas * c.devices_per_replica
    sm = _step_model(c.model, c.hardware, *_plan(c))
    out = _figures(c, spec, chips, goodput, power, ttft, tpot, replicas=replicas, prefill_replicas=0,
                   decode_replicas=0, batch=s.batch, utilization_frac=util)
    return _with_bands(out, sm, sm, t.input_len, t.output_len, s.batch)


def _plan(c: Candidate, tp: int | None = None, hw: str | None = None) -> tuple[ParallelConfig, PrecisionConfig]:
    return (ParallelConfig(tp=tp or c.tp, pp=c.pp, ep=c.ep, dp=1),
            PrecisionConfig(dtype=c.dtype, weight_dtype=c.weight_dtype, kv_dtype=c.kv_dtype))


def _screen_pd(c: Candidate, spec: SearchSpec, t: Traffic) -> dict:
    """Prefill pool on c.hardware (tp), decode pool on c.decode_hardware (decode_tp), sized to the rate."""
    I, O = t.input_len, t.output_len
    par_p, prec = _plan(c)
    par_d, _ = _plan(c, c.decode_tp, c.decode_hardware)
    sm_p = _step_model(c.model, c.hardware, par_p, prec)
    sm_d = _step_model(c.model, c.decode_hardware, par_d, prec)
    budget = c.max_batched_tokens
    if I <= budget:
        n = max(1, budget // I)
        r = sm_p.step(StepBatch(((n, I, I),)))
        t_p, e_p = r.time_s, r.energy_j
        rps_p = n / t_p
    else:
        steps = [sm_p.step(StepBatch(((1, min(budget, I - k), min(k + budget, I)),))) for k in range(0, I, budget)]
        t_p, e_p = sum(x.time_s for x in steps), sum(x.energy_j for x in steps)
        rps_p = 1.0 / t_p
    mem_d = _memory_model(c.model, c.decode_hardware, par_d, prec, c.engine)
    top = max_batch_for(mem_d, I, O, _limits(c, c.decode_tp, c.decode_hardware))
    kv = I + O / 2

    def t_dec(b: int) -> float:
        return sm_d.step(StepBatch((), b, kv)).time_s

    if top < 1 or t_dec(1) > spec.slo_tpot_s:
        return {"feasible": False, "reason": f"decode pool on {c.decode_hardware} tp{c.decode_tp} misses the TPOT target or lacks KV room"}
    lo, hi = 1, top + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if t_dec(mid) <= spec.slo_tpot_s else (lo, mid)
    b, td = lo, t_dec(lo)
    rps_d = b / ((O - 1) * td)
    ttft = t_p * (1 + spec.slo_percentile / 100.0)
    if ttft > spec.slo_ttft_s:
        return {"feasible": False, "reason": f"prefill on {c.hardware} tp{c.tp} takes {t_p:.2f} s per step"}
    rate = t.rate
    n_p, n_d = math.ceil(rate / rps_p), math.ceil(rate / rps_d)
    u_p, u_d = rate / (n_p * rps_p), rate / (n_d * rps_d)
    power = (n_p * (u_p * e_p / t_p + (1 - u_p) * _idle_w(c.hardware, c.tp))
             + n_d * (u_d * sm_d.step(StepBatch((), b, kv)).energy_j / td + (1 - u_d) * _idle_w(c.decode_hardware, c.decode_tp)))
    chips = n_p * c.tp + n_d * c.decode_tp
    out = _figures(c, spec, chips, rate * O, power, ttft, td, replicas=0, prefill_replicas=n_p, decode_replicas=n_d,
                   batch=b, utilization_frac=max(u_p, u_d), cost_chips={c.hardware: n_p * c.tp, c.decode_hardware: n_d * c.decode_tp})
    return _with_bands(out, sm_p, sm_d, I, O, b)


def _with_bands(figures: dict, prefill_model, decode_model, input_len: int, output_len: int, batch: int) -> dict:
    """Error bands of a screened candidate (docs/bands.md) at the default level, as `simulate` derives them: TTFT
    from a prefill step's ops, TPOT and the rates from a decode step's, with the serving rows' end-to-end scales."""
    if not figures.get("feasible"):
        return figures
    pre = prefill_model.step(StepBatch(prefill=((1, input_len, input_len),)))
    dec = decode_model.step(StepBatch(num_decode=max(1, batch), decode_kv_len=float(input_len + output_len / 2)))
    ttft = composite_band(step_parts(pre.breakdown, "prefill"), DEFAULT_BAND_LEVEL, SERVING_TTFT)
    tpot = composite_band(step_parts(dec.breakdown, "decode"), DEFAULT_BAND_LEVEL, SERVING_TPOT)
    figures["band_level"] = DEFAULT_BAND_LEVEL
    add_bands(figures, ttft, ("ttft_s",))
    return add_bands(figures, tpot, ("tpot_s", "tokens_per_s_per_user", "goodput_tokens_per_s",
                                     "goodput_tokens_per_s_per_chip"))


def _figures(c: Candidate, spec: SearchSpec, chips: int, goodput: float, power: float, ttft: float, tpot: float,
             cost_chips: dict[str, int] | None = None, **layout) -> dict:
    if chips > spec.max_devices:
        return {"feasible": False, "reason": f"needs {chips} devices, more than --max-devices {spec.max_devices}"}
    cost = 0.0
    for hw, n in (cost_chips or {c.hardware: chips}).items():
        p = price_cny(hw)
        if p is None:
            cost = math.nan
            break
        cost += n * p
    if spec.budget_cny is not None and not (cost <= spec.budget_cny):
        return {"feasible": False, "reason": f"costs {cost:,.0f} CNY, over the budget" if cost == cost else "no sourced price"}
    return {
        "feasible": True, **layout, "num_devices": chips,
        "goodput_tokens_per_s": goodput, "goodput_tokens_per_s_per_chip": goodput / chips,
        "goodput_tokens_per_s_per_w": goodput / power, "power_w": power,
        "cost_cny": None if cost != cost else cost,
        "goodput_tokens_per_s_per_cny": None if cost != cost else goodput / cost,
        "ttft_s": ttft, "tpot_s": tpot, "tokens_per_s_per_user": 1.0 / tpot,
    }
