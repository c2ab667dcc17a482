"""Capacity per chip for fleet planning (`tokenfab plan`), from the same function as `search`.

`fleet` sits below `search`, so it never imports this: the API hands `capacity_per_chip` to the
planner as its capacity provider. For each TP degree that fits a scale-up domain the chip's best
steady state within the SLO (`estimate_capacity`, open-loop arrivals at the SLO's percentile) is
computed under the default engine's scheduler and memory policy, and the best per chip wins.
"""

from __future__ import annotations

import functools

from tokenfab.errors import DoesNotFitError, TokenfabError
from tokenfab.execution.config import PrecisionConfig, ParallelConfig
from tokenfab.execution.memory import MemoryModel
from tokenfab.execution.step import StepModel
from tokenfab.hardware.catalog import load_chip, load_system
from tokenfab.search.capacity import CapacityResult, EngineLimits, estimate_capacity
from tokenfab.serving.engines import DEFAULT_ENGINE, engine_spec
from tokenfab.workload.hf_config import load_model


def compute_dtype(chip_name: str) -> str:
    """The chip's native 16-bit format (else its first listed one): what an engine would serve in."""
    chip = load_chip(chip_name)
    for d in ("bf16", "fp16", "fp8", "int8"):
        if chip.supports(d):
            return d
    return next(iter(chip.peak_flop_per_s))


def engine_for(engine: str, hardware: str, tp: int):
    """The serving engine's defaults (and fitted overheads) on this chip at this TP degree."""
    return engine_spec(engine, load_chip(hardware).device_memory_bytes, tp)


def limits_for(engine: str, hardware: str, tp: int, max_num_seqs: int | None = None,
               max_batched_tokens: int | None = None) -> EngineLimits:
    """The steady state's view of an engine's scheduler, with explicit limits overriding its defaults."""
    eng = engine_for(engine, hardware, tp)
    return EngineLimits(max_num_seqs=max_num_seqs or eng.max_num_seqs,
                        max_num_batched_tokens=max_batched_tokens or eng.max_num_batched_tokens,
                        block_tokens=eng.block_tokens, chunked_prefill=eng.chunked_prefill,
                        prefill_first=eng.prefill_first, cuda_graph_sizes=tuple(eng.cuda_graph_sizes),
                        step_overhead_s=eng.step_overhead_s, reserve_kv=eng.kv_full == "reserve")


def memory_kwargs(engine: str, hardware: str, tp: int) -> dict:
    """MemoryModel keywords for the engine's KV sizing policy (as `api.simulate` applies it)."""
    policy = engine_for(engine, hardware, tp).memory
    if policy.kind == "device-fraction":
        return {"memory_utilization_frac": policy.fraction}
    if policy.kind == "free-fraction":
        return {"kv_free_memory_frac": policy.fraction}
    return {"static_memory_frac": policy.fraction}


def capacity_for(model: str, hardware: str, tp: int = 1, pp: int = 1, ep: int = 1, dtype: str = "bf16",
                 weight_dtype: str | None = None, kv_dtype: str | None = None, *, input_len: int, output_len: int,
                 ttft_s: float | None, tpot_s: float | None, percentile: float = 99.0, engine: str = DEFAULT_ENGINE,
                 max_num_seqs: int | None = None, max_batched_tokens: int | None = None,
                 closed_loop: bool = False) -> CapacityResult:
    """Best steady state of one replica of (model, hardware, plan, formats, engine) within the SLO."""
    par = ParallelConfig(tp=tp, pp=pp, ep=ep, dp=1)
    prec = PrecisionConfig(dtype=dtype, weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    sm = _step_model(model, hardware, par, prec)
    mem = _memory_model(model, hardware, par, prec, engine)
    limits = limits_for(engine, hardware, tp, max_num_seqs, max_batched_tokens)
    return estimate_capacity(sm, mem, input_len, output_len, ttft_s, tpot_s, limits, percentile, closed_loop)


@functools.lru_cache(maxsize=256)
def _memory_model(model: str, hardware: str, par: ParallelConfig, prec: PrecisionConfig, engine: str) -> MemoryModel:
    return MemoryModel(load_model(model), load_system(hardware, par.num_devices), par, prec,
                       **memory_kwargs(engine, hardware, par.tp))


@functools.lru_cache(maxsize=256)
def _step_model(model: str, hardware: str, par: ParallelConfig, prec: PrecisionConfig) -> StepModel:
    """One StepModel per deployment, kept: its step caches make repeated capacity queries cheap."""
    return StepModel(load_model(model), load_system(hardware, par.num_devices), par, prec)


@functools.lru_cache(maxsize=4096)
def capacity_per_chip(chip: str, model: str, ttft_s: float, tpot_s: float, input_tokens: int, output_tokens: int):
    """(tokens/s per chip, W per chip, source) at the best TP degree <= the scale-up domain (<= 8)."""
    dtype = compute_dtype(chip)
    c = load_chip(chip)
    domain = c.scale_up.domain_size if c.scale_up else 1
    best = None
    for tp in (1, 2, 4, 8):
        if tp > domain:
            break
        try:
            r = capacity_for(model, chip, tp, dtype=dtype, input_len=input_tokens, output_len=output_tokens,
                             ttft_s=ttft_s, tpot_s=tpot_s)
        except TokenfabError:
            continue
        if best is None or r.tokens_per_s_per_chip > best[0].tokens_per_s_per_chip:
            best = (r, tp)
    if best is None:
        raise DoesNotFitError(f"{model} cannot meet TTFT {ttft_s * 1e3:.0f} ms / TPOT {tpot_s * 1e3:.0f} ms on {chip} at tp <= 8")
    r, tp = best
    source = (f"tokenfab search capacity: tp{tp} batch {r.state.batch} {dtype}, steady state of the step model "
              f"(TPOT {r.state.tpot_s * 1e3:.1f} ms, TTFT p99 {r.state.ttft_s * 1e3:.0f} ms)")
    return r.tokens_per_s_per_chip, r.power_w_per_chip, source
