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
from tokenfab.hardware.catalog import load_chip, load_system, system_of_chip
from tokenfab.hardware.spec import ChipSpec
from tokenfab.search.capacity import CapacityResult, EngineLimits, estimate_capacity
from tokenfab.serving.engines import DEFAULT_ENGINE, engine_spec, for_model
from tokenfab.workload.hf_config import load_model
from tokenfab.workload.spec import ModelSpec


def compute_dtype(chip_name: str) -> str:
    """The chip's native 16-bit format (else its first listed one): what an engine would serve in."""
    return serving_dtype(load_chip(chip_name))


def engine_for(engine: str, hardware: str, tp: int):
    """The serving engine's defaults (and fitted overheads) on this chip at this TP degree."""
    return engine_spec(engine, load_chip(hardware).device_memory_bytes, tp)


def limits_for(engine: str, hardware: str, tp: int, max_num_seqs: int | None = None,
               max_batched_tokens: int | None = None, model: str | ModelSpec | None = None, pp: int = 1) -> EngineLimits:
    """The steady state's view of an engine's scheduler, with explicit limits overriding its defaults; with `model`,
    the engine's host times fitted for the model's class too (`engines.for_model`, as `api.simulate` applies them);
    with `pp` stages, the limits of a step of the micro-batches in flight (`EngineSpec.pipelined`, as `api.simulate`
    applies them)."""
    eng = engine_for(engine, hardware, tp)
    if model is not None:
        eng = for_model(eng, load_model(model) if isinstance(model, str) else model)
    if pp > 1:
        overrides = {k: v for k, v in (("max_num_seqs", max_num_seqs), ("max_num_batched_tokens", max_batched_tokens)) if v}
        return _limits_of(eng.model_copy(update=overrides).pipelined(pp))
    return _limits_of(eng, max_num_seqs, max_batched_tokens)


def _limits_of(eng, max_num_seqs: int | None = None, max_batched_tokens: int | None = None) -> EngineLimits:
    return EngineLimits(max_num_seqs=max_num_seqs or eng.max_num_seqs,
                        max_num_batched_tokens=max_batched_tokens or eng.max_num_batched_tokens,
                        block_tokens=eng.block_tokens, chunked_prefill=eng.chunked_prefill,
                        prefill_first=eng.prefill_first, cuda_graph_sizes=tuple(eng.cuda_graph_sizes),
                        step_overhead_s=eng.step_overhead_s, reserve_kv=eng.kv_full == "reserve",
                        frontend_s=eng.frontend_s, prefill_overhead_s=eng.prefill_overhead_s,
                        prefill_overhead_overlaps=eng.prefill_overhead_overlaps,
                        delivery_s_per_token=eng.delivery_s_per_token)


def memory_kwargs(engine: str, hardware: str, tp: int) -> dict:
    """MemoryModel keywords for the engine's KV sizing policy (as `api.simulate` applies it)."""
    return engine_for(engine, hardware, tp).memory.memory_model_kwargs(tp=tp)


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
    limits = limits_for(engine, hardware, tp, max_num_seqs, max_batched_tokens, model=model, pp=pp)
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
    """(tokens/s per chip, W per chip, source, (tokens/s low, high) at the default band level) at the best TP
    degree <= the scale-up domain (<= 8)."""
    r, tp = capacity_on_chip(load_chip(chip), load_model(model), ttft_s, tpot_s, input_tokens, output_tokens)
    source = (f"tokenfab search capacity: tp{tp} batch {r.state.batch} {compute_dtype(chip)}, steady state of the step "
              f"model under {DEFAULT_ENGINE} (TPOT p99 {r.state.tpot_s * 1e3:.1f} ms, TTFT p99 {r.state.ttft_s * 1e3:.0f} ms)")
    band = r.band
    rates = (r.tokens_per_s_per_chip / band.hi_factor, r.tokens_per_s_per_chip / band.lo_factor) if band else (None, None)
    return r.tokens_per_s_per_chip, r.power_w_per_chip, source, rates


TP_DEGREES = (1, 2, 4, 8)  # the TP degrees plan and a design sweep try, up to the chip's scale-up domain


def serving_dtype(chip: ChipSpec) -> str:
    """The format a deployment of this chip serves in: the first of bf16, fp16, fp8, int8 it has."""
    return next((d for d in ("bf16", "fp16", "fp8", "int8") if chip.supports(d)), next(iter(chip.peak_flop_per_s)))


def tp_degrees_on(chip: ChipSpec, tp_degrees: tuple[int, ...] = TP_DEGREES) -> tuple[int, ...]:
    """The TP degrees `capacity_on_chip` walks: those up to the chip's scale-up domain, in order."""
    domain = chip.scale_up.domain_size if chip.scale_up else 1
    out = []
    for tp in tp_degrees:
        if tp > domain:
            break
        out.append(tp)
    return tuple(out)


def engine_on_chip(chip: ChipSpec, model: ModelSpec, tp: int, engine: str = DEFAULT_ENGINE):
    """(system, parallel plan, precision, engine limits, memory model) of one TP-degree deployment of the
    model on this chip under the engine's defaults and memory policy, as `capacity_on_chip` builds it."""
    par, prec = ParallelConfig(tp=tp, dp=1), PrecisionConfig(dtype=serving_dtype(chip))
    system = system_of_chip(chip, tp)
    eng = for_model(engine_spec(engine, chip.device_memory_bytes, tp), model)
    mem = MemoryModel(model, system, par, prec, **eng.memory.memory_model_kwargs(tp=tp))
    return system, par, prec, _limits_of(eng), mem


def capacity_on_chip(chip: ChipSpec, model: ModelSpec, ttft_s: float, tpot_s: float, input_tokens: int,
                     output_tokens: int, percentile: float = 99.0, engine: str = DEFAULT_ENGINE,
                     tp_degrees: tuple[int, ...] = TP_DEGREES) -> tuple[CapacityResult, int]:
    """The same best-over-TP capacity for specs rather than catalog names (a chip being designed):
    (best result, its TP degree). For callers that hold a ChipSpec, such as a design sweep."""
    best: tuple[CapacityResult, int] | None = None
    for tp in tp_degrees_on(chip, tp_degrees):
        try:
            system, par, prec, limits, mem = engine_on_chip(chip, model, tp, engine)
            sm = StepModel(model, system, par, prec)
            r = estimate_capacity(sm, mem, input_tokens, output_tokens, ttft_s, tpot_s, limits, percentile)
        except TokenfabError:
            continue
        if best is None or r.tokens_per_s_per_chip > best[0].tokens_per_s_per_chip:
            best = (r, tp)
    if best is None:
        raise no_capacity(chip, model, ttft_s, tpot_s, tp_degrees)
    return best


def no_capacity(chip: ChipSpec, model: ModelSpec, ttft_s: float, tpot_s: float,
                tp_degrees: tuple[int, ...] = TP_DEGREES) -> DoesNotFitError:
    """The error of a chip on which no TP degree meets the SLO."""
    return DoesNotFitError(f"{model.name} cannot meet TTFT {ttft_s * 1e3:.0f} ms / TPOT {tpot_s * 1e3:.0f} ms "
                           f"on {chip.name} at tp <= {max(tp_degrees)}")
