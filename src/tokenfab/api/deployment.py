"""Building a deployment (model x system x plan x formats) and the argument checks every API call shares."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from tokenfab.api.boundary import validated
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.memory import DEFAULT_MEMORY_UTILIZATION_FRAC, MemoryModel
from tokenfab.execution.step import StepModel
from tokenfab.hardware.catalog import load_system
from tokenfab.units import DTYPES
from tokenfab.workload.hf_config import load_model


MOE_DISPATCH = ("normal", "low-latency", "allgather")  # see execution.layers.moe_token_exchange


def _dtype(value: str | None, what: str) -> str | None:
    if value is not None and value not in DTYPES:
        raise UnknownNameError(what, value, DTYPES)
    return value


def _positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


@dataclass(frozen=True)
class Deployment:
    """A model on a system under a parallel plan and formats: the step and memory models."""

    step_model: StepModel
    memory: MemoryModel

    @property
    def parallel(self) -> ParallelConfig:
        return self.step_model.par


@validated
@functools.lru_cache(maxsize=512)
def deployment(
    model: str, hardware: str, devices: int | None = None, tp: int = 1, pp: int = 1, ep: int = 1, dp: int | None = None,
    dtype: str = "bf16", weight_dtype: str | None = None, kv_dtype: str | None = None,
    memory_utilization_frac: float = DEFAULT_MEMORY_UTILIZATION_FRAC, profile: str | None = None,
    kv_free_memory_frac: float | None = None, static_memory_frac: float | None = None,
    moe_tp: int | None = None, moe_dispatch: str = "normal", staggered_prefill: bool = False,
    runtime_reserved_bytes: float = 0.0, two_batch_overlap: bool = False, num_redundant_experts: int = 0,
    sizing_base: Literal["device", "cuda-total"] = "device", held_before_sizing_bytes: float = 0.0,
) -> Deployment:
    """Build (and cache) the deployment; `devices` defaults to tp x pp x dp, `dp` to devices / (tp x pp).
    For MoE models the dp ranks are attention-DP ranks of one instance sharing the experts (ep x moe_tp = tp x dp);
    `staggered_prefill`: they serve traffic, each prefilling its own requests (`layers.expert_group_tokens`);
    `two_batch_overlap`: steps run as two micro-batches hiding the expert all-to-all (`execution.overlap`, ep > 1);
    `num_redundant_experts`: extra expert slots placed by EPLB (`ParallelConfig.num_redundant_experts`)."""
    _positive(devices=devices, tp=tp, pp=pp, ep=ep, dp=dp, moe_tp=moe_tp)
    if moe_dispatch not in MOE_DISPATCH:
        raise UnknownNameError("MoE dispatch", moe_dispatch, list(MOE_DISPATCH))
    _dtype(dtype, "data type"), _dtype(weight_dtype, "weight data type"), _dtype(kv_dtype, "kv-cache data type")
    if not 0.0 < memory_utilization_frac <= 1.0:
        raise InvalidInputError(f"memory utilisation must lie in (0, 1], got {memory_utilization_frac}")
    if dp is None:
        if devices is not None and devices % (tp * pp):
            raise InvalidInputError(f"--devices {devices} is not a multiple of tp x pp = {tp * pp}")
        dp = devices // (tp * pp) if devices is not None else 1
    if devices is not None and devices != tp * pp * dp:
        raise InvalidInputError(f"--devices {devices} != tp x pp x dp = {tp}x{pp}x{dp} = {tp * pp * dp}")
    par = ParallelConfig(tp=tp, pp=pp, ep=ep, dp=dp, moe_tp=moe_tp, moe_dispatch=moe_dispatch,
                         two_batch_overlap=bool(two_batch_overlap), num_redundant_experts=num_redundant_experts)
    system = load_system(hardware, par.num_devices)
    spec = load_model(model)
    prec = PrecisionConfig(dtype=dtype, weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    sm = StepModel(spec, system, par, prec, profile, staggered_prefill=staggered_prefill)
    for name, frac in (("KV share of free memory", kv_free_memory_frac), ("static memory fraction", static_memory_frac)):
        if frac is not None and not 0.0 < frac <= 1.0:
            raise InvalidInputError(f"{name} must lie in (0, 1], got {frac}")
    return Deployment(sm, MemoryModel(spec, system, par, prec, memory_utilization_frac, kv_free_memory_frac,
                                      static_memory_frac, runtime_reserved_bytes, sizing_base,
                                      held_before_sizing_bytes))


# The cached builder without the argument check, for API functions whose own @validated check already covered
# every argument they pass on (the same names, so the same types and BOUNDS): a second check per call cost
# as much as the decode-step prediction it guarded.
checked_deployment = deployment.__wrapped__
