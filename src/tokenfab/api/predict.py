"""`predict` (a static batch) and `step` (one engine step) in the API."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tokenfab.api.boundary import validated
from tokenfab.api.deployment import _positive, checked_deployment
from tokenfab.cost.bands import DEFAULT_BAND_LEVEL, add_bands, check_level, composite_band, op_band, op_family
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.execution.bands import step_parts
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.memory import DEFAULT_MEMORY_UTILIZATION_FRAC
from tokenfab.execution.predict import PredictResult, estimate_static_batch
from tokenfab.execution.speculative import SpeculativeModel, resolve_spec
from tokenfab.execution.step import StepModel, StepResult
from tokenfab.execution.graph import GraphPredictResult, estimate_graph
from tokenfab.hardware.catalog import load_system
from tokenfab.workload.hf_config import load_model
from tokenfab.workload.onnx_graph import is_graph, load_graph


@validated
def predict(
    model: str = "llama-3.1-8b", hardware: str = "h100-sxm", devices: int | None = None, tp: int = 1, pp: int = 1,
    ep: int = 1, dp: int | None = None, dtype: str = "bf16", weight_dtype: str | None = None,
    kv_dtype: str | None = None, batch: int = 1, input_len: int = 1024, output_len: int = 128,
    memory_utilization_frac: float = DEFAULT_MEMORY_UTILIZATION_FRAC, profile: str | None = None,
    spec_method: str | None = None, spec_tokens: int = 1, spec_acceptance: float | None = None,
    spec_draft_model: str | None = None, moe_tp: int | None = None, moe_dispatch: str = "normal", band_level: float = DEFAULT_BAND_LEVEL,
    two_batch_overlap: bool = False, num_redundant_experts: int = 0,
) -> PredictResult | GraphPredictResult:
    """Latency, throughput, memory and energy of a static batch of `batch` requests; with `spec_method`
    ('draft', 'eagle', 'mtp'), decoding is speculative with `spec_tokens` drafted tokens per step.
    Language-model results carry error bands at `band_level` (docs/bands.md)."""
    _positive(batch=batch, input_len=input_len, output_len=output_len, spec_tokens=spec_tokens)
    band_level = check_level(band_level)
    if is_graph(model):
        return predict_graph(model, hardware, batch=batch, dp=dp or (devices or 1), dtype=dtype, tp=tp, pp=pp, ep=ep,
                             profile=profile, spec_method=spec_method)
    d = checked_deployment(model, hardware, devices, tp, pp, ep, dp, dtype, weight_dtype, kv_dtype, memory_utilization_frac, profile,
                   moe_tp=moe_tp, moe_dispatch=moe_dispatch, two_batch_overlap=two_batch_overlap,
                   num_redundant_experts=num_redundant_experts)
    spec = speculative_model(d.step_model, spec_method, spec_tokens, spec_acceptance, spec_draft_model)
    result = estimate_static_batch(d.step_model, d.memory, batch, input_len, output_len, spec)
    result.band_level = band_level
    return result


def predict_graph(model: str, hardware: str, *, batch: int = 1, dp: int = 1, dtype: str = "int8", tp: int = 1,
                  pp: int = 1, ep: int = 1, profile: str | None = None, spec_method: str | None = None) -> GraphPredictResult:
    """An ONNX graph (path or bundled 'resnet-50' / 'bert-large'): latency of `batch` samples on one
    device and the throughput of `dp` replicas."""
    _positive(batch=batch, dp=dp)
    if tp * pp * ep != 1 or spec_method is not None:
        raise InvalidInputError("ONNX graphs run one replica per device: use --dp for more devices "
                                "(--tp/--pp/--ep and --spec-method apply to language models only)")
    chip = load_system(hardware, dp).chip
    return estimate_graph(load_graph(model, batch), chip, dtype, dp, profile)


def speculative_model(sm: StepModel, method: str | None, num_tokens: int, acceptance: float | None,
                      draft_model: str | None) -> SpeculativeModel | None:
    """The speculative drafter of a deployment from the `--spec-*` flags (None without a method)."""
    if method is None:
        if acceptance is not None or draft_model is not None:
            raise InvalidInputError("--spec-acceptance/--spec-draft-model need --spec-method draft|eagle|mtp")
        return None
    if num_tokens > 16:
        raise InvalidInputError(f"--spec-tokens must be <= 16, got {num_tokens}")
    spec = resolve_spec(sm.model, method, num_tokens, acceptance, draft_model)
    draft = load_model(draft_model) if draft_model else None
    return SpeculativeModel(sm, spec, draft)


@dataclass(frozen=True)
class StepInfo:
    """Time and energy of one engine step (per replica; energy over all devices)."""

    result: StepResult
    phase: str = "decode"
    band_level: float = DEFAULT_BAND_LEVEL

    @property
    def time_s(self) -> float:
        return self.result.time_s

    @property
    def energy_j(self) -> float:
        return self.result.energy_j

    def to_dict(self) -> dict:
        r = self.result
        breakdown = r.breakdown  # merged on each access: once here
        out = {"time_s": r.time_s, "energy_j": r.energy_j, "num_tokens": r.num_tokens, "band_level": self.band_level,
               "breakdown": {k: {"time_s": v.time_s, "bound": v.bound} for k, v in breakdown.items()}}
        band = composite_band(step_parts(breakdown, self.phase), self.band_level)
        for k, v in breakdown.items():
            add_bands(out["breakdown"][k], op_band(op_family(v.op, self.phase), v.source or "generic", self.band_level),
                      ("time_s",))
        return add_bands(out, band, ("time_s", "energy_j"))


@functools.lru_cache(maxsize=4096)
def _decode_batch(batch: int, context_len: int) -> StepBatch:
    """The (immutable) StepBatch of a decode step, built once per shape: building one costs more than the
    step model's cached answer for it (decode-step loops repeat shapes)."""
    return StepBatch(num_decode=batch, decode_kv_len=float(context_len))


@validated
def step(
    model: str, hardware: str, *, tp: int = 1, pp: int = 1, ep: int = 1, dp: int = 1, dtype: str = "bf16",
    weight_dtype: str | None = None, kv_dtype: str | None = None, batch: int = 1, context_len: int = 1024,
    phase: str = "decode", new_tokens: int | None = None, moe_tp: int | None = None, band_level: float = DEFAULT_BAND_LEVEL,
) -> StepInfo:
    """One engine step on one replica: `batch` sequences decoding one token at `context_len`, or
    (phase='prefill') prefilling `new_tokens` (default context_len) tokens each over context_len positions."""
    d = checked_deployment(model, hardware, None, tp, pp, ep, dp, dtype, weight_dtype, kv_dtype, moe_tp=moe_tp)
    # batch, context_len >= 1: @validated's BOUNDS refused anything else before this line
    if phase == "decode":
        b = _decode_batch(batch, context_len)
    elif phase == "prefill":
        q = new_tokens or context_len
        b = StepBatch(prefill=((batch, q, max(q, context_len)),))
    else:
        raise UnknownNameError("phase", phase, ["prefill", "decode"])
    return StepInfo(d.step_model.step(b), phase, check_level(band_level))


