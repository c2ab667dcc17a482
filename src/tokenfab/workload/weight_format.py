"""How a low-precision checkpoint stores its weights: the format of each module and its scale overhead.

A `--weight-dtype fp4` run of DeepSeek-V3 means the NVFP4 checkpoint NVIDIA ships (nvidia/DeepSeek-R1-FP4): 4-bit
experts and dense MLPs with an FP8 scale per 16 elements (4.5 bits per weight, not 4) and BF16 attention. Counting
every linear layer at half a byte undercounts its weights by 16% (78.95 vs 94.50 GiB per GPU at TP 4, SGLang PR
#9162's log). The data live in `weight_formats.yaml`, each entry with its source; the choice, in order:
1. the format the model's own config.json names (`ModelSpec.weight_format`, from its quantization_config) when
   it stores that weight dtype (GPT-OSS: MXFP4, with attention kept BF16 through AttentionSpec.weights_quantized);
2. a published checkpoint of the model's family in that dtype (`checkpoints:`), which also says whether it keeps
   attention 16-bit;
3. the dtype's default format (fp4: NVFP4, fp8: per-tensor FP8); other dtypes are plain element sizes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tokenfab.errors import DataFileError, UnknownNameError
from tokenfab.units import DType, bytes_per_element
from tokenfab.workload.spec import ModelSpec

FORMATS_FILE = Path(__file__).with_name("weight_formats.yaml")


class WeightFormatSpec(BaseModel):
    """One storage format: element bits plus one scale per block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: DType = Field(description="The weight dtype (tokenfab name) this format stores.")
    element_bits: int = Field(ge=1, le=32, description="Bits of one weight element.")
    scale_bits: int = Field(ge=0, le=32, description="Bits of one block scale (0: per-tensor scales only).")
    block_elements: int = Field(ge=1, description="Weight elements sharing one scale.")
    source: str = Field(min_length=1, description="URL of the format's definition or of a checkpoint that uses it.")
    basis: str = Field(min_length=1, description="What the source shows.")

    @property
    def bytes_per_element(self) -> float:
        """Stored bytes per weight element, block scales included."""
        return (self.element_bits + self.scale_bits / self.block_elements) / 8.0


class CheckpointSpec(BaseModel):
    """A published checkpoint of a model family in one weight dtype."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    families: tuple[str, ...] = Field(min_length=1, description="Hugging Face model_types it covers.")
    weight_dtype: DType = Field(description="The --weight-dtype (or --dtype) that selects it.")
    format: str = Field(description="Key into `formats`.")
    attention_16bit: bool = Field(description="Whether the checkpoint keeps every attention projection in 16 bit.")
    checkpoint: str = Field(min_length=1, description="Hugging Face id of the checkpoint.")
    source: str = Field(min_length=1, description="URL showing its layout.")
    basis: str = Field(min_length=1, description="What the source shows.")


@dataclass(frozen=True, slots=True)
class WeightLayout:
    """What the ledger and the step model need of a checkpoint: bytes per quantised weight, and whether
    attention is stored (and run) 16-bit."""

    format: str  # key into formats, or the plain dtype name
    bytes_per_weight: float  # quantised linear layers, block scales included
    attention_16bit: bool
    source: str


@functools.lru_cache(maxsize=1)
def _table() -> tuple[dict[str, WeightFormatSpec], dict[str, str], tuple[CheckpointSpec, ...]]:
    raw: dict[str, Any] = yaml.safe_load(FORMATS_FILE.read_text())
    try:
        formats = {k: WeightFormatSpec(**v) for k, v in raw["formats"].items()}
        checkpoints = tuple(CheckpointSpec(**c) for c in raw["checkpoints"])
        defaults = dict(raw["default_format"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFileError(f"{FORMATS_FILE.name}: {exc}") from None
    for name in [*defaults.values(), *(c.format for c in checkpoints)]:
        if name not in formats:
            raise DataFileError(f"{FORMATS_FILE.name}: format {name!r} is not among {sorted(formats)}")
    return formats, defaults, checkpoints


def weight_format(name: str) -> WeightFormatSpec:
    """A format by key (e.g. 'nvfp4')."""
    formats = _table()[0]
    if name not in formats:
        raise UnknownNameError("weight format", name, sorted(formats))
    return formats[name]


def published_checkpoint(family: str, weight_dtype: str) -> CheckpointSpec | None:
    """The published checkpoint of `family` in `weight_dtype`, if the table lists one."""
    return next((c for c in _table()[2] if family in c.families and c.weight_dtype == weight_dtype), None)


@functools.lru_cache(maxsize=256)
def checkpoint_layout(model: ModelSpec, weight_dtype: str) -> WeightLayout:
    """The layout a `weight_dtype` run of `model` loads (order of choice in the module docstring)."""
    formats, defaults, _ = _table()
    own = model.weight_format if model.weight_format and formats[model.weight_format].dtype == weight_dtype else None
    ckpt = None if own else published_checkpoint(model.family, weight_dtype)
    name = own or (ckpt.format if ckpt else defaults.get(weight_dtype))
    if name is None:
        return WeightLayout(weight_dtype, bytes_per_element(weight_dtype), False, "plain element size (tokenfab.units)")
    fmt = formats[name]
    source = ckpt.source if ckpt else (model.source if own else fmt.source)
    return WeightLayout(name, fmt.bytes_per_element, bool(ckpt and ckpt.attention_16bit), source)


def stored_bytes_per_weight(weight_dtype: str, format_name: str | None = None) -> float:
    """Stored bytes per weight element of `weight_dtype` in format `format_name` (block scales included), or in
    the dtype's default format when none is named (fp4: NVFP4, 4.5 bits; fp8: per-tensor, 1 byte); a dtype
    without quantised formats is its plain element size. For callers that know the format but not the model
    (a fused-MoE kernel benchmark names its precision, e.g. 'w4a8_mxfp4_mxfp8')."""
    formats, defaults, _ = _table()
    name = format_name or defaults.get(weight_dtype)
    if name is None:
        return bytes_per_element(weight_dtype)
    if name not in formats:
        raise UnknownNameError("weight format", name, sorted(formats))
    return formats[name].bytes_per_element


def format_of_quantization_config(quant: Any) -> str | None:
    """The format a config.json's quantization_config (or a ModelOpt hf_quant_config 'quantization' block) names:
    quant_method mxfp4; modelopt / quant_algo NVFP4 or FP8; fp8 with or without 128 x 128 weight blocks."""
    if not isinstance(quant, dict):
        return None
    method, algo = str(quant.get("quant_method", "")).lower(), str(quant.get("quant_algo", "")).upper()
    if method == "mxfp4":
        return "mxfp4"
    if algo == "NVFP4" or method == "nvfp4":
        return "nvfp4"
    if method == "fp8" or algo == "FP8":
        return "fp8-block128" if list(quant.get("weight_block_size") or []) == [128, 128] else "fp8-tensor"
    return None
