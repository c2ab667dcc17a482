"""Cost of a matrix multiply C[m,n] = A[m,k] @ W[k,n] (A: activations, W: weights).

The shape enters three ways: FLOPs 2mnk against the tensor-core peak of the compute
format; DRAM bytes against memory bandwidth, which makes small-m decode GEMMs memory
bound (A, W and C once each when the on-chip memory holds the operand panels; big GEMMs
re-read A and W, and weights held on chip stream from there: see `tokenfab.cost.onchip`); and occupancy: with `min(m, 128) * n / 128^2`
output-tile work units, thin GEMMs leave part of the chip idle (split-K recovers
only part of it). Quantised formats pick their own fitted curve ("gemm kind").
"""

from __future__ import annotations

from tokenfab.cost.chip_cost import ChipCost, KernelWork
from tokenfab.cost.onchip import GemmShape, gemm_traffic_bytes
from tokenfab.cost.result import OpCost
from tokenfab.units import bytes_per_element

TILE = 128  # output tile edge the occupancy measure counts in (CUTLASS/cuBLAS default class)

_SIXTEEN_BIT = {"bf16", "fp16", "fp32", "tf32"}


def gemm_kind(cc: ChipCost, act_dtype: str, weight_dtype: str, variant: str = "") -> tuple[str, str]:
    """(profile key, compute dtype) of a GEMM with these operand formats on this chip.

    Weight-only quantisation (int8/int4/fp8/fp4 weights with 16-bit activations), and
    low-precision GEMMs on chips without that tensor-core rate, dequantise to 16-bit
    and run at the 16-bit rate.
    """
    w_bits = bytes_per_element(weight_dtype) * 8
    if act_dtype in _SIXTEEN_BIT or not cc.supports(act_dtype):
        compute = act_dtype if act_dtype in _SIXTEEN_BIT and cc.supports(act_dtype) else "bf16"
        if weight_dtype in _SIXTEEN_BIT:
            return ("fp32" if compute in ("fp32", "tf32") else "bf16"), compute
        return ("w8a16" if w_bits >= 8 else "w4a16"), compute
    if act_dtype != weight_dtype and w_bits < bytes_per_element(act_dtype) * 8:
        return ("w8a16" if w_bits >= 8 else "w4a16"), "bf16"
    kind = {"fp8": "fp8", "int8": "int8", "fp4": "fp4", "int4": "int4"}[act_dtype]
    if variant:
        kind = f"{kind}-{variant}"
    return kind, act_dtype


def gemm_formats(cc: ChipCost, act_dtype: str, weight_dtype: str, variant: str = "") -> tuple:
    """(profile key, compute dtype, output bytes, A bytes, W bytes) of a GEMM with these operand formats on this chip:
    they depend on the chip and the formats only, so each chip cost works them out once (`ChipCost.gemm_formats`)."""
    formats = cc.gemm_formats.get((act_dtype, weight_dtype, variant))
    if formats is None:
        kind, compute = gemm_kind(cc, act_dtype, weight_dtype, variant)
        out_bytes = 4.0 if act_dtype in ("fp32", "tf32") else 2.0
        a_bytes = bytes_per_element(act_dtype) if act_dtype in _SIXTEEN_BIT or cc.supports(act_dtype) else 2.0
        formats = cc.gemm_formats[(act_dtype, weight_dtype, variant)] = (
            kind, compute, out_bytes, a_bytes, bytes_per_element(weight_dtype))
    return formats


def _gemm_terms(cc: ChipCost, m: int, n: int, k: int, a_bytes: float, w_bytes: float, out_bytes: float,
                weights_on_chip: bool) -> tuple[float, float, float, float, GemmShape]:
    """(FLOPs, DRAM bytes, on-chip bytes, work units, shape) of a GEMM: the shape-dependent part of `gemm_work`."""
    flops = 2.0 * m * n * k
    shape = GemmShape(m, n, k, a_bytes, w_bytes, out_bytes, weights_on_chip)
    dram, onchip = gemm_traffic_bytes(m, n, k, a_bytes, w_bytes, out_bytes, cc.onchip.reuse_capacity_bytes, weights_on_chip)
    work = min(m, TILE) * n / (TILE * TILE)
    return flops, dram, onchip, work, shape


def gemm_work(
    cc: ChipCost, m: int, n: int, k: int, act_dtype: str = "bf16", weight_dtype: str | None = None, variant: str = "",
    weights_on_chip: bool = False,
) -> KernelWork:
    """FLOPs, DRAM bytes, peak and work units of a GEMM: everything but the fitted efficiencies.

    `weights_on_chip`: W is held in on-chip memory across steps (a deployment whose weights fit)."""
    kind, compute, out_bytes, a_bytes, w_bytes = gemm_formats(cc, act_dtype, weight_dtype or act_dtype, variant)
    flops, dram, onchip, work, shape = _gemm_terms(cc, m, n, k, a_bytes, w_bytes, out_bytes, weights_on_chip)
    return KernelWork(flops, dram, cc.peak(compute), work, kind, onchip, shape)


def _gemm_curve(cc: ChipCost, act_dtype: str, weight_dtype: str, variant: str) -> tuple:
    """`gemm_formats` plus the compute peak and the fitted curve with its source: what `estimate_gemm` looks up for
    every GEMM, which depends on the chip and the formats only (remembered in `ChipCost.gemm_curves`)."""
    formats = gemm_formats(cc, act_dtype, weight_dtype, variant)
    params, source = cc.resolved.gemm(formats[0])
    curve = cc.gemm_curves[(act_dtype, weight_dtype, variant)] = (*formats[2:], cc.peak(formats[1]), params, source)
    return curve


def estimate_gemm(
    cc: ChipCost, m: int, n: int, k: int, act_dtype: str = "bf16", weight_dtype: str | None = None,
    *, variant: str = "", warm_cache: bool = False, op: str = "gemm", weights_on_chip: bool = False,
) -> OpCost:
    """Time of one GEMM on one device. `warm_cache` models a microbenchmark that re-runs the
    same operands (they may stay in on-chip cache); a model's forward pass is never warm, but
    may hold its weights on chip (`weights_on_chip`). The work is `gemm_work`'s (the same terms), without building
    its record."""
    weight_dtype = weight_dtype or act_dtype
    curve = cc.gemm_curves.get((act_dtype, weight_dtype, variant))
    out_bytes, a_bytes, w_bytes, peak, params, source = curve or _gemm_curve(cc, act_dtype, weight_dtype, variant)
    flops, dram, onchip, work, shape = _gemm_terms(cc, m, n, k, a_bytes, w_bytes, out_bytes, weights_on_chip)
    return cc.run_kernel(op, flops, dram, peak, params, work, source, warm_cache, onchip, shape)
