"""`predict` (a static batch) and `step` (one engine step) in the API."""

from __future__ import annotations

from dataclasses import dataclass

from tokenfab.api.boundary import validated
from tokenfab.api.deployment import _positive, deployment
from tokenfab.errors import UnknownNameError
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.memory import DEFAULT_MEMORY_UTILIZATION_FRAC
from tokenfab.execution.predict import PredictResult, estimate_static_batch
from tokenfab.execution.step import StepResult


@validated
def predict(
    model: str = "llama-3.1-8b", hardware: str = "h100-sxm", devices: int | None = None, tp: int = 1, pp: int = 1,
    ep: int = 1, dp: int | None = None, dtype: str = "bf16", weight_dtype: str | None = None,
    kv_dtype: str | None = None, batch: int = 1, input_len: int = 1024, output_len: int = 128,
    memory_utilization_frac: float = DEFAULT_MEMORY_UTILIZATION_FRAC, profile: str | None = None,
) -> PredictResult:
    """Latency, throughput, memory and energy of a static batch of `batch` requests."""
    _positive(batch=batch, input_len=input_len, output_len=output_len)
    d = deployment(model, hardware, devices, tp, pp, ep, dp, dtype, weight_dtype, kv_dtype, memory_utilization_frac, profile)
    return estimate_static_batch(d.step_model, d.memory, batch, input_len, output_len)


@dataclass(frozen=True)
class StepInfo:
    """Time and energy of one engine step (per replica; energy over all devices)."""

    result: StepResult

    @property
    def time_s(self) -> float:
        return self.result.time_s

    @property
    def energy_j(self) -> float:
        return self.result.energy_j

    def to_dict(self) -> dict:
        r = self.result
        return {"time_s": r.time_s, "energy_j": r.energy_j, "num_tokens": r.num_tokens,
                "breakdown": {k: {"time_s": v.time_s, "bound": v.bound} for k, v in r.breakdown.items()}}


@validated
def step(
    model: str, hardware: str, *, tp: int = 1, pp: int = 1, ep: int = 1, dp: int = 1, dtype: str = "bf16",
    weight_dtype: str | None = None, kv_dtype: str | None = None, batch: int = 1, context_len: int = 1024,
    phase: str = "decode", new_tokens: int | None = None,
) -> StepInfo:
    """One engine step on one replica: `batch` sequences decoding one token at `context_len`, or
    (phase='prefill') prefilling `new_tokens` (default context_len) tokens each over context_len positions."""
    d = deployment(model, hardware, None, tp, pp, ep, dp, dtype, weight_dtype, kv_dtype)
    _positive(batch=batch, context_len=context_len)
    if phase == "decode":
        b = StepBatch(num_decode=batch, decode_kv_len=float(context_len))
    elif phase == "prefill":
        q = new_tokens or context_len
        b = StepBatch(prefill=((batch, q, max(q, context_len)),))
    else:
        raise UnknownNameError("phase", phase, ["prefill", "decode"])
    return StepInfo(d.step_model.step(b))


