"""Cost of the attention kernel of one layer on one device (after TP sharding of heads).

Prefill follows FlashAttention's IO: Q read and O written once (no materialised score
matrix), K/V read once per KV head when they fit in the on-chip memory, which the query
heads of a GQA group and the query blocks share (else once per wave of readers: see
`tokenfab.cost.onchip`), causal masking halves the work of the new tokens, and the new
K/V are written to the cache. Decode reads the whole KV cache of every sequence once per
step (from on chip when the deployment holds it there); query heads that share a KV
head (GQA/MQA) share the read.
MLA decode uses the absorbed form: every head attends over the shared compressed
latent (kv_lora_rank + rope dims), so the cache read is per token, not per head.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tokenfab.cost.chip_cost import ChipCost, KernelWork
from tokenfab.cost.kernel import KernelParams, kernel_time_array
from tokenfab.cost.onchip import DecodeKvShape, PrefillKvShape, prefill_kv_passes
from tokenfab.cost.result import OpCost
from tokenfab.units import bytes_per_element

Q_BLOCK = 128  # query rows per FlashAttention work unit
KV_SPLIT = 256  # KV positions per split-KV (flash-decoding) work unit
MLA_HEAD_TILE = 64  # query heads per tensor-core tile of an absorbed-MLA decode kernel (FlashMLA)


def _compute_dtype(act_dtype: str) -> str:
    """Attention runs in the activation format: fp32 stays fp32, everything else computes in 16 bits."""
    return "fp32" if act_dtype in ("fp32", "tf32") else "bf16"


def kv_kind(kv_dtype: str) -> str:
    """Profile key of the attention curve: 8-bit caches have their own fitted curve."""
    return "fp8" if bytes_per_element(kv_dtype) <= 1.0 else "bf16"


def prefill_attention_work(
    cc: ChipCost, batch: int, q_len: int, kv_len: int, num_heads: int, num_kv_heads: int, head_dim: int,
    v_head_dim: int | None = None, act_dtype: str = "bf16", kv_dtype: str = "bf16", window: int | None = None,
) -> KernelWork:
    """Causal attention of `q_len` new tokens per sequence over `kv_len` positions (kv_len >= q_len;
    kv_len - q_len tokens were already cached, as in chunked prefill or prefix caching)."""
    dv = v_head_dim or head_dim
    kv_len = max(kv_len, q_len)
    attended = kv_len - (q_len - 1) / 2.0  # mean keys per query under the causal mask
    if window:
        attended = min(attended, float(window))
        kv_read = min(kv_len, window + q_len)
    else:
        kv_read = kv_len
    flops = 2.0 * batch * num_heads * q_len * attended * (head_dim + dv)
    a, kvb = bytes_per_element(act_dtype), bytes_per_element(kv_dtype)
    q_blocks = math.ceil(q_len / Q_BLOCK)
    passes = prefill_kv_passes(kv_read * (head_dim + dv) * kvb, num_heads, num_kv_heads, q_blocks,
                               cc.onchip.reuse_capacity_bytes, cc.compute_units)
    fixed = batch * (
        q_len * num_heads * (head_dim * a + dv * 2.0)  # read Q, write O (16-bit)
        + q_len * num_kv_heads * (head_dim + dv) * kvb  # write the new K, V into the cache
    )
    kv_once = batch * kv_read * num_kv_heads * (head_dim + dv) * kvb  # read K, V
    dram = fixed + passes * kv_once
    shape = PrefillKvShape(fixed, kv_once, kv_read * (head_dim + dv) * kvb, num_heads, num_kv_heads, q_blocks)
    work = batch * num_heads * q_blocks
    return KernelWork(flops, dram, cc.peak(_compute_dtype(act_dtype)), work, kv_kind(kv_dtype), 0.0, shape)


def estimate_prefill_attention(
    cc: ChipCost, batch: int, q_len: int, kv_len: int, num_heads: int, num_kv_heads: int, head_dim: int,
    v_head_dim: int | None = None, act_dtype: str = "bf16", kv_dtype: str = "bf16",
    *, window: int | None = None, op: str = "attention_prefill", warm_cache: bool = False,
) -> OpCost:
    """Time of prefill attention (see `prefill_attention_work`); `warm_cache` as in `estimate_gemm`."""
    w = prefill_attention_work(cc, batch, q_len, kv_len, num_heads, num_kv_heads, head_dim, v_head_dim,
                               act_dtype, kv_dtype, window)
    params, source = cc.resolved.attention("prefill", w.kind)
    return cc.run_kernel(op, w.flops, w.dram_bytes, w.peak, params, w.work_units, source, warm_cache,
                         w.onchip_bytes, w.shape)


def decode_attention_work(
    cc: ChipCost, batch: int, kv_len: float, num_heads: int, num_kv_heads: int, head_dim: int,
    v_head_dim: int | None = None, kv_dtype: str = "bf16", window: int | None = None, latent_dim: int | None = None,
    act_dtype: str = "bf16", kv_on_chip: bool = False,
) -> KernelWork:
    """One new token per sequence attending to `kv_len` cached positions (the mean over the batch).

    With `latent_dim` (MLA absorbed form) the cache holds one `latent_dim` vector per token shared
    by all heads; scores and values are computed in the latent space. `kv_on_chip`: the cache is
    held in on-chip memory (a deployment whose weights and KV fit there), read at its bandwidth.
    """
    dv = v_head_dim or head_dim
    vector = isinstance(kv_len, np.ndarray)  # one formula for one context or an array of them
    ceil = np.ceil if vector else math.ceil
    kv = (np.minimum(kv_len, window) if vector else min(kv_len, window)) if window else kv_len
    kvb = bytes_per_element(kv_dtype)
    if latent_dim:
        # scores over the latent + rope dims (head_dim), values over the latent (dv); the kernel
        # (FlashMLA, FlashInfer MLA) tiles the heads as the rows of a tensor-core GEMM
        flops = 2.0 * batch * num_heads * kv * (head_dim + dv)
        cache = batch * kv * latent_dim * kvb
        units = batch * ceil(num_heads / MLA_HEAD_TILE) * ceil(kv / KV_SPLIT)
    else:
        flops = 2.0 * batch * num_heads * kv * (head_dim + dv)
        cache = batch * kv * num_kv_heads * (head_dim + dv) * kvb
        units = batch * num_kv_heads * ceil(kv / KV_SPLIT)
    dram = cache + batch * num_heads * (head_dim + dv) * 2.0 + batch * num_kv_heads * (head_dim + dv) * kvb
    onchip = 0.0
    if kv_on_chip:
        dram, onchip = dram - cache, cache
    kind = mla_kind(kv_dtype) if latent_dim else kv_kind(kv_dtype)
    return KernelWork(flops, dram, cc.peak(_compute_dtype(act_dtype)), units, kind, onchip,
                      DecodeKvShape(cache, kv_on_chip))


def mla_kind(kv_dtype: str) -> str:
    """Profile key of the absorbed-MLA decode curve (its own kernel class: FlashMLA, FlashInfer MLA)."""
    return "mla" if kv_kind(kv_dtype) == "bf16" else "mla-fp8"


def decode_curve(cc: ChipCost, kind: str, latent_dim: int | None):
    """Fitted curve of a decode kernel. Absorbed MLA uses its own fitted class ('mla', from measured MLA
    decode rows) where a profile layer has it, else `mla_curve_from_chip`; every other decode kernel the
    decode curve."""
    if not latent_dim:
        return cc.resolved.attention("decode", kind)
    for prof, source in cc.resolved.layers():
        if kind in prof.attention_decode:
            return prof.attention_decode[kind], source
        if "mla" in prof.attention_decode:
            return prof.attention_decode["mla"], source
    return mla_curve_from_chip(cc, kv_kind("fp8" if kind.endswith("fp8") else "bf16"))


def mla_curve_from_chip(cc: ChipCost, kv: str) -> tuple[KernelParams, str]:
    """Absorbed-MLA decode curve of a chip without measured MLA rows, from its two fitted attention kernels:
    the decode (cache-streaming) curve for fixed cost, memory efficiency and cache terms, and the prefill
    (tensor-core FlashAttention) curve's compute efficiency, since the kernel streams a cache like GQA decode
    but computes heads x cached tokens on tensor cores like prefill. Neither curve alone is the kernel: the
    prefill curve's memory efficiency is unconstrained by its compute-bound rows (0.04-0.2), which put B200
    and H100 MLA decode at ~17% of bandwidth; the decode curve's compute efficiency is a CUDA-core one.
    Scored on the one chip with measured MLA decode (H20, 41 FlashInfer MLA rows, never used to build this
    rule): 18.6% MAPE (median -20%), against 180% for the prefill curve and 59% for the decode curve
    (tests/calibration/test_mla_decode_h20.py)."""
    decode, source = cc.resolved.attention("decode", kv)
    prefill, _ = cc.resolved.attention("prefill", kv)
    return dataclasses.replace(decode, compute_eff=prefill.compute_eff), source


def estimate_decode_attention(
    cc: ChipCost, batch: int, kv_len: float, num_heads: int, num_kv_heads: int, head_dim: int,
    v_head_dim: int | None = None, kv_dtype: str = "bf16", *, window: int | None = None,
    latent_dim: int | None = None, op: str = "attention_decode", warm_cache: bool = False, act_dtype: str = "bf16",
    kv_on_chip: bool = False,
) -> OpCost:
    """Time of decode attention (see `decode_attention_work`); `warm_cache` as in `estimate_gemm`.

    Absorbed MLA decode is its own kernel class: all heads share one latent cache, so the kernel is a
    tensor-core GEMM of heads x cached tokens, compute bound on most chips; the GQA decode curve,
    fitted on kernels that stream the cache, never reaches that limit (H20 FlashInfer MLA rows: 510%
    MAPE with it). Chips without measured MLA rows use their prefill (FlashAttention) curve."""
    w = decode_attention_work(cc, batch, kv_len, num_heads, num_kv_heads, head_dim, v_head_dim, kv_dtype,
                              window, latent_dim, act_dtype, kv_on_chip)
    params, source = decode_curve(cc, w.kind, latent_dim)
    return cc.run_kernel(op, w.flops, w.dram_bytes, w.peak, params, w.work_units, source, warm_cache,
                         w.onchip_bytes, w.shape)


def decode_attention_arrays(
    cc: ChipCost, batch: int, kv_len: np.ndarray, num_heads: int, num_kv_heads: int, head_dim: int,
    v_head_dim: int | None = None, kv_dtype: str = "bf16", *, window: int | None = None,
    latent_dim: int | None = None, act_dtype: str = "bf16",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`estimate_decode_attention` at many contexts at once: (time_s, flops, bytes) arrays whose element i
    equals the scalar estimate at kv_len[i] (same work function, same kernel formula, vectorised). For a KV
    cache streamed from DRAM only: contexts whose KV is held on chip go through `estimate_decode_attention`."""
    w = decode_attention_work(cc, batch, np.asarray(kv_len, dtype=float), num_heads, num_kv_heads, head_dim, v_head_dim,
                              kv_dtype, window, latent_dim, act_dtype)
    params, _ = decode_curve(cc, w.kind, latent_dim)
    time_s = kernel_time_array(w.flops, w.dram_bytes, w.peak, cc.bandwidth_bytes_per_s, params.as_vector(),
                               w.work_units, cc.compute_units)
    return time_s, w.flops, w.dram_bytes
