"""How a model is run: parallel plan and numeric formats, and their validation."""

from __future__ import annotations

import math

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tokenfab.errors import InvalidInputError, ParallelismError
from tokenfab.hardware.spec import ChipSpec, SystemSpec
from tokenfab.units import DTYPES, DType
from tokenfab.workload.spec import ModelSpec

SIXTEEN_BIT = ("bf16", "fp16")


class ParallelConfig(BaseModel):
    """Parallel layout of one instance (devices = tp x dp x pp).

    Attention runs tensor-parallel over `tp` devices in each of `dp` data-parallel ranks; the
    routed experts of an MoE model are spread over the same tp x dp devices as `ep` expert
    groups of `moe_tp` devices each (ep x moe_tp = tp x dp; TensorRT-LLM's tp=8 with
    attention_dp is tp=1, dp=8 here). For a dense model the dp ranks share nothing, so they
    are plain replicas, as before.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tp: int = Field(default=1, ge=1, description="Tensor-parallel degree of attention (and dense MLPs): heads and columns split over tp devices.")
    pp: int = Field(default=1, ge=1, description="Pipeline stages: layers split into pp contiguous groups.")
    ep: int = Field(default=1, ge=1, description="Expert-parallel groups the routed experts are spread over (an expert count ep does not divide gets redundant expert slots, as EPLB does).")
    dp: int = Field(default=1, ge=1, description="Attention data-parallel ranks, each with its own batch; for dense models independent replicas.")
    moe_tp: int | None = Field(default=None, ge=1, description="Tensor-parallel split inside each expert; default tp x dp / ep.")
    moe_dispatch: Literal["normal", "low-latency", "allgather"] = Field(
        default="normal", description="Token exchange with attention-DP (DeepEP terms): 'normal' sends each token once per expert group in the activation format; 'low-latency' sends one fp8 copy per token-expert pair; 'allgather' gathers every rank's tokens on every rank and reduce-scatters the outputs (TensorRT-LLM without MNNVL or DeepEP).")
    num_redundant_experts: int = Field(
        default=0, ge=0, le=1 << 16, description="Extra expert slots over the EP group (SGLang --ep-num-redundant-experts, vLLM --num-redundant-experts, TensorRT-LLM EPLB num_slots minus the experts), filled with copies of the most loaded experts and placed by load with DeepSeek's EPLB (`cost.moe_popularity`); (experts + slots) must be a multiple of ep. 0: no EPLB, as every engine defaults to.")
    two_batch_overlap: bool = Field(
        default=False, description="Run each step as two micro-batches whose expert all-to-all hides under the other's compute (SGLang --enable-two-batch-overlap; `execution.overlap`); needs ep > 1 and pp = 1.")

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def expert_tp(self) -> int:
        """Tensor-parallel degree inside each expert (ep x expert_tp = tp x dp)."""
        if self.moe_tp is not None:
            return self.moe_tp
        return max(1, self.tp * self.dp // self.ep)

    @property
    def tokens_move(self) -> bool:
        """Whether MoE tokens must travel between devices: only when attention-DP ranks hold different
        tokens (dp > 1); with dp = 1 every device already holds every token of the step."""
        return self.dp > 1


class PrecisionConfig(BaseModel):
    """Numeric formats: compute/activation, weights (may be lower: weight-only quantisation), KV cache."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: DType = Field(default="bf16", description="Matmul input format (activations); also the weight format unless weight_dtype is set.")
    weight_dtype: DType | None = Field(default=None, description="Linear-layer weight format (int4/int8/fp8/fp4 for weight-only quantisation).")
    kv_dtype: DType | None = Field(default=None, description="KV-cache format; defaults to the 16-bit activation format.")

    @property
    def weights(self) -> str:
        return self.weight_dtype or self.dtype

    @property
    def activations(self) -> str:
        """Format of the residual stream and elementwise kernels (8/4-bit GEMM inputs are quantised on the fly)."""
        if self.dtype in ("fp32", "tf32"):
            return "fp32"
        return self.dtype if self.dtype in SIXTEEN_BIT else "bf16"

    @property
    def kv(self) -> str:
        return self.kv_dtype or self.activations


def check_precision(chip: ChipSpec, precision: PrecisionConfig) -> None:
    """Reject compute formats the chip has no rate for (one line naming those it has): no silent
    fallback to another format's rate. Weight-only formats (weight_dtype) dequantise explicitly."""
    chip.check_compute_dtype(precision.dtype)
    if precision.kv not in DTYPES:
        raise InvalidInputError(f"unknown kv dtype {precision.kv}")


def check_parallelism(model: ModelSpec, system: SystemSpec, par: ParallelConfig) -> None:
    """Reject plans the model or the system cannot run, naming the nearest valid choices."""
    if par.num_devices > system.num_devices:
        raise ParallelismError(
            f"tp x pp x dp = {par.num_devices} devices but the system has {system.num_devices}"
        )
    _check_moe_layout(model, par)
    _check_overlap(par)
    for group in model.layers:
        attn = group.attention
        if attn.num_heads % par.tp:
            ok = [d for d in _divisors(attn.num_heads) if d <= max(8, par.tp * 2)]
            raise ParallelismError(f"--tp {par.tp} does not divide the {attn.num_heads} attention heads of {model.name}; valid tp: {', '.join(map(str, ok))}")
        kv = attn.num_kv_heads
        if kv % par.tp and par.tp % kv:
            raise ParallelismError(f"--tp {par.tp} neither divides nor is a multiple of the {kv} KV heads of {model.name}")
        ffn = group.ffn
        width = ffn.intermediate_size if ffn.kind == "dense" else ffn.expert_intermediate_size
        etp = par.expert_tp if ffn.kind == "moe" else par.tp
        if width % etp:
            raise ParallelismError(f"tensor parallel degree {etp} does not divide the MLP width {width} of {model.name}")
    if par.pp > model.num_layers:
        raise ParallelismError(f"--pp {par.pp} exceeds the {model.num_layers} layers of {model.name}")


def _check_moe_layout(model: ModelSpec, par: ParallelConfig) -> None:
    """ep x moe_tp must cover the tp x dp devices that hold experts (MoE models only)."""
    _check_redundant(model, par)
    if not model.is_moe:
        if par.ep > 1:
            raise ParallelismError(f"--ep {par.ep} needs a mixture-of-experts model; {model.name} is dense (use --ep 1)")
        if par.moe_tp not in (None, par.tp):
            raise ParallelismError(f"--moe-tp {par.moe_tp} needs a mixture-of-experts model; {model.name} is dense")
        return
    group = par.tp * par.dp
    if par.moe_tp is None and group % par.ep:
        ok = _divisors(group)
        raise ParallelismError(f"--ep {par.ep} does not divide tp x dp = {group} devices holding experts; valid ep: {', '.join(map(str, ok))}")
    if par.ep * par.expert_tp != group:
        raise ParallelismError(
            f"--ep {par.ep} x --moe-tp {par.expert_tp} = {par.ep * par.expert_tp} must equal tp x dp = {group} "
            f"(e.g. --ep {group} --moe-tp 1, or --ep 1 --moe-tp {group})")


def _check_redundant(model: ModelSpec, par: ParallelConfig) -> None:
    """Redundant expert slots need experts spread over ranks (ep > 1) and fill every rank with the same number."""
    r = par.num_redundant_experts
    if not r:
        return
    if not model.is_moe:
        raise ParallelismError(f"--num-redundant-experts {r} needs a mixture-of-experts model; {model.name} is dense")
    if par.ep <= 1:
        raise ParallelismError(f"--num-redundant-experts {r} needs expert parallelism (--ep > 1); got --ep {par.ep}")
    for group in model.layers:
        e = group.ffn.num_experts if group.ffn.kind == "moe" else 0
        if e and (e + r) % par.ep:
            fit = (-e) % par.ep
            ok = ", ".join(str(fit + i * par.ep) for i in range(3))
            raise ParallelismError(f"{e} experts + --num-redundant-experts {r} is not a multiple of --ep {par.ep}; "
                                   f"valid: {ok}, ...")


def _check_overlap(par: ParallelConfig) -> None:
    """Two-batch overlap hides the expert all-to-all, so it needs experts spread over devices (ep > 1), as SGLang
    requires DeepEP's EP MoE for it; pipeline stages are not combined with it (SGLang does not either)."""
    if not par.two_batch_overlap:
        return
    if par.ep <= 1:
        raise ParallelismError(f"--two-batch-overlap needs expert parallelism: got --ep {par.ep}; use --ep > 1 (e.g. --ep {max(2, par.tp * par.dp)}) or drop --two-batch-overlap")
    if par.pp > 1:
        raise ParallelismError(f"--two-batch-overlap is not modelled with pipeline stages: got --pp {par.pp}; use --pp 1 or drop --two-batch-overlap")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layers_per_stage(num_layers: int, pp: int) -> int:
    """Layers on the busiest pipeline stage."""
    return math.ceil(num_layers / pp)
