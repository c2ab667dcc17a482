"""Cost of a linear-attention layer (Gated DeltaNet, as in Qwen3-Next and Qwen3.5) on one device.

Such a layer keeps no KV cache: each value head carries a dk x dv state matrix that every token
decays, updates with a rank-1 delta-rule correction and reads with its query. Decode is then a
state streaming kernel: per sequence and step, the fp32 state is read and written once (2 x heads
x dk x dv x 4 bytes) whatever the context length. Prefill runs the chunked form (chunks of
`CHUNK` tokens, as the flash-linear-attention kernels do): per token and head about 4 dk dv FLOPs
for the state (readout and update) plus 2 CHUNK (dk + dv) for the intra-chunk attention.

No linear-attention kernel was measured in shared/calibration, so the efficiency curve is the
chip's fitted attention curve of the same phase (the closest kernel class: tiled, streaming,
tensor-core matmuls), and the cost is labelled with that curve's source.
"""

from __future__ import annotations

import math

from tokenfab.cost.attention import _compute_dtype
from tokenfab.cost.chip_cost import ChipCost, KernelWork
from tokenfab.cost.result import OpCost
from tokenfab.units import bytes_per_element

CHUNK = 64  # tokens per chunk of the chunked gated-delta-rule kernel (fla chunk_gated_delta_rule)
STATE_BYTES = 4.0  # the recurrent state is kept in fp32 (Qwen3.5 config: mamba_ssm_dtype float32)


def linear_prefill_work(cc: ChipCost, batch: int, q_len: int, num_heads: int, num_key_heads: int, key_dim: int,
                        value_dim: int, act_dtype: str = "bf16") -> KernelWork:
    """`batch` sequences each running `q_len` new tokens through the chunked recurrence (heads after TP)."""
    tokens = batch * q_len
    chunk = min(CHUNK, q_len)
    flops = tokens * num_heads * (4.0 * key_dim * value_dim + 2.0 * chunk * (key_dim + value_dim))
    a = bytes_per_element(act_dtype)
    io = tokens * (2 * num_key_heads * key_dim + 2 * num_heads * value_dim + 2 * num_heads) * a  # q, k, v, o, gates
    state = batch * num_heads * key_dim * value_dim * STATE_BYTES * 2.0  # read the prior state, write the last
    work = batch * num_heads * math.ceil(q_len / CHUNK)
    return KernelWork(flops, io + state, cc.peak(_compute_dtype(act_dtype)), work, "bf16")


def linear_decode_work(cc: ChipCost, batch: int, num_heads: int, num_key_heads: int, key_dim: int, value_dim: int,
                       act_dtype: str = "bf16") -> KernelWork:
    """One token per sequence: decay, delta-rule update and readout of every head's state."""
    flops = batch * num_heads * 6.0 * key_dim * value_dim
    a = bytes_per_element(act_dtype)
    io = batch * (2 * num_key_heads * key_dim + 2 * num_heads * value_dim + 2 * num_heads) * a
    state = batch * num_heads * key_dim * value_dim * STATE_BYTES * 2.0
    return KernelWork(flops, io + state, cc.peak(_compute_dtype(act_dtype)), batch * num_heads, "bf16")


def estimate_linear_attention(cc: ChipCost, phase: str, batch: int, q_len: int, num_heads: int, num_key_heads: int,
                              key_dim: int, value_dim: int, act_dtype: str = "bf16", *, op: str = "attn.linear") -> OpCost:
    """Time of the recurrent core of one linear-attention layer (phase 'prefill' or 'decode')."""
    if phase == "prefill":
        w = linear_prefill_work(cc, batch, q_len, num_heads, num_key_heads, key_dim, value_dim, act_dtype)
    else:
        w = linear_decode_work(cc, batch, num_heads, num_key_heads, key_dim, value_dim, act_dtype)
    params, source = cc.resolved.attention(phase, w.kind)
    return cc.run_kernel(op, w.flops, w.dram_bytes, w.peak, params, w.work_units, source)


def estimate_dsa_indexer(cc: ChipCost, batch: int, q_len: int, kv_len: float, num_heads: int, head_dim: int,
                         kv_dtype: str = "fp8", *, op: str = "attn.indexer") -> OpCost:
    """DeepSeek sparse attention's lightning indexer: every new token scores all `kv_len` cached index keys
    (one `head_dim` key per token shared by `num_heads` indexer heads), then top-k selects what the MLA
    core attends. Dense in the context, hence what grows with it once the core is capped at top-k."""
    kvb = bytes_per_element(kv_dtype)
    scored = max(1.0, kv_len - (q_len - 1) / 2.0)  # mean keys per query under the causal mask
    flops = 2.0 * batch * q_len * num_heads * scored * head_dim
    dram = batch * (kv_len * head_dim * kvb + q_len * (num_heads * head_dim * 2.0 + scored * 4.0))  # keys, q, scores
    units = batch * max(1, math.ceil(q_len / 128)) * max(1, math.ceil(kv_len / 256))
    phase = "decode" if q_len == 1 else "prefill"
    params, source = cc.resolved.attention(phase, "fp8" if kvb <= 1.0 else "bf16")
    return cc.run_kernel(op, flops, dram, cc.peak("fp8" if cc.supports("fp8") else "bf16"), params, units, source)
