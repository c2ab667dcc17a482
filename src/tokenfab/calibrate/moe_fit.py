"""The pooled (generic) fused-MoE fit: what a chip that never ran the MoE kernel inherits.

A fused MoE layer's fixed cost is the engine's chain of small kernels (routing, permute, two grouped
GEMMs, activation, finalize): 53 us on A100, 45-50 us on H100, 34-43 us on L40S, 21 us on B200 in
ops_moe.csv. Pooling it as one absolute number gives every unseen chip the average of the others; a chip's
own dense-GEMM fixed cost (fitted on ops_gemm.csv, which a user of a new chip has long before any MoE
benchmark) tracks how fast that chip launches and drains a kernel. So the pooled fit measures the fixed cost
in units of each chip's bf16 GEMM fixed cost: the rows of chip c are fitted as

    t / L_c = r + blend(F / (P L_c ce u), B / (BW L_c me))

which is the shared kernel formula with time in units of L_c (the least-squares residuals are log-time,
so the scaling changes nothing else), and r = `moe_launch_per_gemm_launch` is what the profile stores.
Leave-one-chip-out on ops_moe.csv (bench/accuracy_moe.py, 'moe-layer:unseen-chip') scores this form
against the absolute pooled fixed cost.

Which work-unit count a kernel follows (one CTA column per active expert, or one per row block of TILE
rows of each expert: `cost.moe.moe_work`, `row_tiles`) depends on how the backend tiles M, which no spec
states; each kind is fitted both ways and keeps the form with the lower fitting loss on its own training
rows (`fit_moe_kind`), like the fitter's grid over cache residency.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tokenfab.calibrate.fit import UPPER, FitQuality, KernelSamples, fit_kernel, predict_samples
from tokenfab.cost.kernel import KernelParams
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.spec import ChipSpec

# Bound of the fitted ratio: the kernel chain is a handful of kernels (fitted 6-15 on the measured chips).
MAX_LAUNCH_PER_GEMM_LAUNCH = 50.0


def scaled_by_launch(samples: KernelSamples, gemm_launch_s: float) -> KernelSamples:
    """`samples` with time in units of `gemm_launch_s` (peaks and bandwidths scaled to match)."""
    if gemm_launch_s <= 0.0:
        raise InvalidInputError(f"a chip's bf16 GEMM fixed cost must be > 0 to scale MoE rows, got {gemm_launch_s}")
    return KernelSamples(samples.flops, samples.dram_bytes, samples.peak * gemm_launch_s,
                         samples.bandwidth * gemm_launch_s, samples.work_units, samples.compute_units,
                         samples.cache_bytes, samples.time_s / gemm_launch_s)


def fit_loss(params: KernelParams, samples: KernelSamples) -> float:
    """The fitter's own objective at `params` (soft-L1 on log time, f_scale 0.05, as `calibrate.fit`)."""
    z = (np.log(predict_samples(params.as_vector(), samples)) - np.log(samples.time_s)) / 0.05
    return float(np.sum(np.sqrt(1.0 + z * z) - 1.0))


def fit_moe_kind(plain: KernelSamples, tiles: KernelSamples | None,
                 upper: np.ndarray | None) -> tuple[KernelParams, FitQuality, bool]:
    """Fit one MoE kind with both work-unit counts (same rows; `tiles` counts row blocks) and keep the form
    whose fit has the lower loss on these rows: (params, quality, row_tiles)."""
    params, q = fit_kernel(plain, upper=upper)
    if tiles is None:
        return params, q, False
    t_params, t_q = fit_kernel(tiles, upper=upper)
    if fit_loss(t_params, tiles) < fit_loss(params, plain):
        return t_params, t_q, True
    return params, q, False


def fit_pooled_moe(parts: list[tuple[KernelSamples, float]], upper: np.ndarray | None,
                   tiles: list[KernelSamples] | None = None) -> tuple[KernelParams, FitQuality, float, bool]:
    """Fit one MoE kind on several chips' rows, each given with its chip's bf16 GEMM fixed cost (and, in
    `tiles`, the same rows counted with row blocks).

    Returns (efficiencies with launch_s = the ratio r, fit quality, r, row_tiles); the caller turns r into
    seconds for a chip with `r x that chip's GEMM fixed cost`."""
    bounds = (UPPER if upper is None else upper).copy()
    bounds[0] = MAX_LAUNCH_PER_GEMM_LAUNCH
    scaled = KernelSamples.concat([scaled_by_launch(s, launch) for s, launch in parts])
    scaled_tiles = None if tiles is None else KernelSamples.concat(
        [scaled_by_launch(t, launch) for t, (_, launch) in zip(tiles, parts)])
    params, q, row_tiles = fit_moe_kind(scaled, scaled_tiles, bounds)
    return params, q, params.launch_s, row_tiles


def chip_gemm_launch_s(rows: pd.DataFrame, chip: ChipSpec) -> float | None:
    """The chip's bf16 dense-GEMM fixed cost fitted on its own GEMM rows (as its profile fits it), or None."""
    from tokenfab.calibrate.profiles import MIN_POINTS, kernel_samples

    gemm = rows[rows["op"] == "gemm"]
    samples = kernel_samples(gemm, chip).get(("gemm", "bf16")) if len(gemm) else None
    if samples is None or len(samples) < MIN_POINTS:
        return None
    return fit_kernel(samples)[0].launch_s
