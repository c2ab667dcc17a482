"""Checkpoint weight formats: bytes per weight with block scales, and which modules stay 16-bit."""

from __future__ import annotations

import pytest

from tokenfab.errors import UnknownNameError
from tokenfab.workload.hf_config import load_model, parse_config
from tokenfab.workload.weight_format import (
    checkpoint_layout,
    format_of_quantization_config,
    stored_bytes_per_weight,
    weight_format,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name, bytes_per_weight", [
    ("nvfp4", (4 + 8 / 16) / 8),        # E2M1 + one FP8 E4M3 scale per 16 elements: 0.5625 B
    ("mxfp4", (4 + 8 / 32) / 8),        # E2M1 + one E8M0 scale per 32 elements: 0.53125 B
    ("fp8-block128", 1 + 4 / 16384),    # one FP32 scale per 128 x 128 block
    ("fp8-tensor", 1.0),
])
def test_format_bytes_hand_computed(name, bytes_per_weight):
    assert weight_format(name).bytes_per_element == pytest.approx(bytes_per_weight, rel=1e-12)


def test_unknown_format_names_the_choices():
    with pytest.raises(UnknownNameError, match="nvfp4"):
        weight_format("nvfp5")


@pytest.mark.parametrize("model, dtype, fmt, attention_16bit", [
    ("deepseek-v3", "fp4", "nvfp4", True),          # nvidia/DeepSeek-R1-FP4: BF16 attention (ModelOpt ptq.py '*attn*' off)
    ("deepseek-v3", "fp8", "fp8-block128", False),  # deepseek-ai/DeepSeek-V3's own FP8 checkpoint
    ("gpt-oss-120b", "fp4", "mxfp4", False),        # its config.json names mxfp4; attention via AttentionSpec
    ("llama-3.1-8b", "fp4", "nvfp4", False),        # no listed checkpoint: fp4's default format
    ("llama-3.1-8b", "fp8", "fp8-tensor", False),
    ("llama-3.1-8b", "int4", "int4", False),        # no format table entry: the plain element size
    ("llama-3.1-8b", "bf16", "bf16", False),
])
def test_layout_choice(model, dtype, fmt, attention_16bit):
    layout = checkpoint_layout(load_model(model), dtype)
    assert (layout.format, layout.attention_16bit) == (fmt, attention_16bit)
    assert layout.bytes_per_weight >= {"fp4": 0.5, "fp8": 1.0, "int4": 0.5, "bf16": 2.0}[dtype]


def test_gpt_oss_own_format_only_for_its_dtype():
    """GPT-OSS's config names MXFP4; a bf16 run of it stores bf16 weights, not MXFP4."""
    assert checkpoint_layout(load_model("gpt-oss-120b"), "bf16").bytes_per_weight == 2.0


@pytest.mark.parametrize("quant, fmt", [
    ({"quant_method": "mxfp4"}, "mxfp4"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4"),
    ({"quant_algo": "NVFP4", "group_size": 16, "exclude_modules": ["lm_head"]}, "nvfp4"),  # hf_quant_config block
    ({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}, "fp8-block128"),
    ({"quant_method": "fp8"}, "fp8-tensor"),
    ({"quant_method": "awq", "bits": 4}, None),
    (None, None),
])
def test_format_of_quantization_config(quant, fmt):
    assert format_of_quantization_config(quant) == fmt


def test_user_config_modelopt_ignore_list_keeps_attention_16bit():
    """A user's config.json with ModelOpt's quantization_config: the format comes from it, and an `ignore`
    (or exclude_modules) list naming self_attn leaves attention 16-bit, like GPT-OSS's modules_to_not_convert."""
    import json

    from tokenfab.workload.hf_config import CONFIG_DIR

    config = json.loads((CONFIG_DIR / "qwen3-8b.json").read_text())
    config["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "NVFP4",
                                     "ignore": ["lm_head", "model.layers.*.self_attn*"]}
    spec = parse_config(config, "qwen3-8b-nvfp4")
    assert spec.weight_format == "nvfp4"
    assert not any(g.attention.weights_quantized for g in spec.layers)
    assert checkpoint_layout(spec, "fp4").format == "nvfp4"


def test_stored_bytes_of_a_named_format_or_the_dtypes_default():
    assert stored_bytes_per_weight("fp4", "mxfp4") == pytest.approx((4 + 8 / 32) / 8)  # a benchmark naming MXFP4
    assert stored_bytes_per_weight("fp4") == pytest.approx((4 + 8 / 16) / 8)  # fp4's default: NVFP4
    assert stored_bytes_per_weight("fp8", "fp8-block128") == pytest.approx(1 + 4 / 16384)
    assert stored_bytes_per_weight("fp8") == 1.0 and stored_bytes_per_weight("bf16") == 2.0
    with pytest.raises(UnknownNameError, match="mxfp4"):
        stored_bytes_per_weight("fp4", "mxfp5")
