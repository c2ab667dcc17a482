"""Cost of convolutions (implicit GEMM) and batched activation-activation GEMMs on one device.

Both reuse the GEMM kernel model of `cost.gemm` (same FLOPs, fitted curve and occupancy measure)
and correct only the DRAM bytes: an implicit-GEMM convolution reads the input tensor once (the
im2col matrix, k = C x kh x kw times larger, is formed on chip), and a batched GEMM reads both of
its operands per batch element. With `resident=True` (the caller found the whole working set
fits in on-chip SRAM), the chip's fitted on-chip cache model applies: bytes that fit stream at
the cache bandwidth (`KernelParams.cache_bw_factor`, fitted on warm microbenchmarks).

Occupancy counts every output tile (ceil(m / 128) x ceil(n / 128)): a convolution's rows are
N x H x W pixels, so a 64-channel conv still fills the chip with pixel tiles. (The LLM GEMM
measure, min(m, 128) x n / 128^2, counts only one row of tiles because decode GEMMs are short.)
"""

from __future__ import annotations

import math

from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.gemm import TILE, gemm_work
from tokenfab.cost.result import OpCost
from tokenfab.units import bytes_per_element


def _run(cc: ChipCost, op: str, m: int, n: int, k: int, groups: int, dram_bytes: float, act_dtype: str,
         weight_dtype: str, resident: bool) -> OpCost:
    w = gemm_work(cc, m, n, k, act_dtype, weight_dtype)
    params, source = cc.resolved.gemm(w.kind)
    tiles = math.ceil(m / TILE) * math.ceil(n / TILE) * groups
    return cc.run_kernel(op, w.flops * groups, dram_bytes, w.peak, params, tiles, source, resident)


def estimate_conv(cc: ChipCost, m: int, n: int, k: int, groups: int, io_elements: int, weight_elements: int,
                  act_dtype: str = "int8", *, resident: bool = False, op: str = "conv") -> OpCost:
    """A convolution as `groups` implicit GEMMs [m x k] @ [k x n] (m = N H_out W_out, n = C_out / groups,
    k = C_in / groups kh kw), moving its input and output tensors (`io_elements`) and weights once."""
    a = bytes_per_element(act_dtype)
    return _run(cc, op, m, n, k, groups, (io_elements + weight_elements) * a, act_dtype, act_dtype, resident)


def estimate_gemm_resident(cc: ChipCost, m: int, n: int, k: int, act_dtype: str = "int8", *, resident: bool = False,
                           op: str = "gemm") -> OpCost:
    """A GEMM against weights in the activation format, optionally with its working set on chip."""
    a = bytes_per_element(act_dtype)
    out = 2.0 if act_dtype in ("bf16", "fp16") else (4.0 if act_dtype in ("fp32", "tf32") else a)
    return _run(cc, op, m, n, k, 1, m * k * a + k * n * a + m * n * out, act_dtype, act_dtype, resident)


def estimate_batched_gemm(cc: ChipCost, batch: int, m: int, n: int, k: int, act_dtype: str = "fp16", *,
                          resident: bool = False, op: str = "batched_gemm") -> OpCost:
    """`batch` independent [m x k] @ [k x n] products between activations (attention scores, context)."""
    a = bytes_per_element(act_dtype)
    return _run(cc, op, m, n, k, batch, batch * (m * k + k * n + m * n) * a, act_dtype, act_dtype, resident)
