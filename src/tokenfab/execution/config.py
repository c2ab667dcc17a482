"""How a model is run: parallel plan and numeric formats, and their validation."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from tokenfab.errors import InvalidInputError, ParallelismError
from tokenfab.hardware.spec import ChipSpec, SystemSpec
from tokenfab.units import DTYPES, DType
from tokenfab.workload.spec import ModelSpec

SIXTEEN_BIT = ("bf16", "fp16")


class ParallelConfig(BaseModel):
    """Tensor, pipeline, expert and data parallelism (devices = tp x pp x dp)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tp: int = Field(default=1, ge=1, description="Tensor-parallel degree: heads and MLP columns split over tp devices.")
    pp: int = Field(default=1, ge=1, description="Pipeline stages: layers split into pp contiguous groups.")
    ep: int = Field(default=1, ge=1, description="Expert-parallel degree: routed experts split over ep devices of the tp x dp group.")
    dp: int = Field(default=1, ge=1, description="Data-parallel replicas; the batch is split between them.")

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def expert_tp(self) -> int:
        """Tensor-parallel degree inside each expert (experts not split by ep are split by tp)."""
        return max(1, self.tp // self.ep)

    @property
    def moe_token_group(self) -> int:
        """DP replicas whose tokens meet in one expert-parallel group (ep > tp spans replicas)."""
        return max(1, self.ep // self.tp)


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
        if ffn.kind == "moe" and ffn.num_experts % par.ep:
            ok = [d for d in _divisors(ffn.num_experts) if d <= par.tp * par.dp]
            raise ParallelismError(f"--ep {par.ep} does not divide the {ffn.num_experts} experts of {model.name}; valid ep: {', '.join(map(str, ok))}")
    if par.ep > 1 and not model.is_moe:
        raise ParallelismError(f"--ep {par.ep} needs a mixture-of-experts model; {model.name} is dense (use --ep 1)")
    if par.ep > par.tp * par.dp:
        raise ParallelismError(f"--ep {par.ep} exceeds tp x dp = {par.tp * par.dp} devices that can hold experts")
    if par.ep > par.tp and par.ep % par.tp:
        raise ParallelismError(f"--ep {par.ep} larger than --tp {par.tp} must be a multiple of it")
    if par.ep <= par.tp and par.tp % par.ep:
        raise ParallelismError(f"--ep {par.ep} must divide --tp {par.tp} (or be a multiple of it)")
    if par.pp > model.num_layers:
        raise ParallelismError(f"--pp {par.pp} exceeds the {model.num_layers} layers of {model.name}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layers_per_stage(num_layers: int, pp: int) -> int:
    """Layers on the busiest pipeline stage."""
    return math.ceil(num_layers / pp)
