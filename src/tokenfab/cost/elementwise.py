"""Cost of memory-bound kernels: norms, activations, rotary, residual adds, embedding
gathers, sampling, MoE routing top-k. Each is a DRAM round trip of its tensors at the
chip's fitted streaming efficiency, plus a launch cost; FLOPs count against the vector
(non-tensor) peak.
"""

from __future__ import annotations

from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.result import OpCost


def estimate_elementwise(cc: ChipCost, op: str, dram_bytes: float, flops: float = 0.0, *, warm_cache: bool = False) -> OpCost:
    """One memory-bound kernel moving `dram_bytes` (reads + writes) and doing `flops` of vector work;
    `warm_cache` as in `estimate_gemm` (a benchmark loop over an array that fits on chip)."""
    curve = cc.elementwise_curve
    if curve is None:  # the chip's streaming curve and what it is said to come from: asked once per chip cost
        params, source = cc.resolved.elementwise()
        curve = cc.elementwise_curve = (params, "analytic" if source == "generic" else source)
    return cc.run_kernel(op, flops, dram_bytes, cc.vector_flop_per_s, curve[0], 1.0, curve[1], warm_cache)


def norm_bytes(tokens: int, hidden: int, act_bytes: float) -> float:
    """RMSNorm/LayerNorm: read x and the residual, write the normed x and the new residual."""
    return 4.0 * tokens * hidden * act_bytes + hidden * 2.0


def activation_bytes(tokens: int, width: int, act_bytes: float, gated: bool) -> float:
    """SwiGLU reads gate and up (2 x width) and writes width; plain GELU reads and writes width."""
    return tokens * width * act_bytes * (3.0 if gated else 2.0)


def rotary_bytes(tokens: int, heads: int, kv_heads: int, rotary_dim: int, act_bytes: float) -> float:
    """Rotary embedding reads and writes the rotated part of q and k."""
    return 2.0 * tokens * (heads + kv_heads) * rotary_dim * act_bytes


def embedding_bytes(tokens: int, hidden: int, weight_bytes: float, act_bytes: float) -> float:
    """Gather one embedding row per token and write it out."""
    return tokens * hidden * (weight_bytes + act_bytes)


def sampling_bytes(num_sequences: int, vocab: int) -> float:
    """Softmax/top-p over fp32 logits: read them twice and write probabilities once."""
    return 3.0 * num_sequences * vocab * 4.0
