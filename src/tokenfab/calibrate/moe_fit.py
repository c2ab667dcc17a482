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

Which work form a kernel follows (one CTA column per active expert; one per row block of TILE rows of each
expert; or TensorRT-LLM-gen's token tile, which pads every active expert's rows to a tile sized from all
tokens: `cost.moe.moe_work`, `cost.moe.MOE_FORMS`) depends on how the backend tiles M, which no spec states;
each kind is fitted every way and keeps the form with the lowest fitting loss on its own training rows
(`fit_moe_kind`), like the fitter's grid over cache residency. On ops_moe.csv B200's MXFP4 x MXFP8 rows
(TensorRT-LLM-gen) pick the tile ladder (fit 9.1%, against 18.8% for row blocks); every CUTLASS kind fits it
worse than its own form (e.g. L40S CUTLASS bf16 15.8% against 11.4%).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tokenfab.calibrate.fit import UPPER, FitQuality, KernelSamples, fit_kernel, predict_samples
from tokenfab.cost.kernel import KernelParams
from tokenfab.cost.moe import MOE_FORMS
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


def fit_moe_kind(forms: dict[str, KernelSamples], upper: np.ndarray | None) -> tuple[KernelParams, FitQuality, str]:
    """Fit one MoE kind once per work form (the same rows counted as `cost.moe.MOE_FORMS` count them: form ->
    samples) and keep the form whose fit has the lowest loss on these rows: (params, quality, form). Ties keep
    the earlier form in MOE_FORMS order (the plainer count)."""
    best = None
    for form in [f for f in MOE_FORMS if f in forms]:
        params, q = fit_kernel(forms[form], upper=upper)
        loss = fit_loss(params, forms[form])
        if best is None or loss < best[3]:
            best = (params, q, form, loss)
    if best is None:
        raise InvalidInputError(f"no MoE work form to fit (known: {', '.join(MOE_FORMS)})")
    return best[0], best[1], best[2]


def fit_pooled_moe(parts: list[tuple[KernelSamples, float]], upper: np.ndarray | None,
                   forms: dict[str, list[KernelSamples]] | None = None) -> tuple[KernelParams, FitQuality, float, str]:
    """Fit one MoE kind on several chips' rows, each given with its chip's bf16 GEMM fixed cost (`parts`, counted
    in the 'columns' form), and in `forms` the same rows counted in the other work forms (form -> one samples per
    part).

    Returns (efficiencies with launch_s = the ratio r, fit quality, r, work form); the caller turns r into
    seconds for a chip with `r x that chip's GEMM fixed cost`."""
    bounds = (UPPER if upper is None else upper).copy()
    bounds[0] = MAX_LAUNCH_PER_GEMM_LAUNCH
    launches = [launch for _, launch in parts]
    scaled = {"columns": KernelSamples.concat([scaled_by_launch(s, launch) for s, launch in parts])}
    for form, samples in (forms or {}).items():
        if form != "columns":
            scaled[form] = KernelSamples.concat([scaled_by_launch(t, launch) for t, launch in zip(samples, launches)])
    params, q, form = fit_moe_kind(scaled, bounds)
    return params, q, params.launch_s, form


def chip_gemm_launch_s(rows: pd.DataFrame, chip: ChipSpec) -> float | None:
    """The chip's bf16 dense-GEMM fixed cost fitted on its own GEMM rows (as its profile fits it), or None."""
    from tokenfab.calibrate.profiles import MIN_POINTS, kernel_samples

    gemm = rows[rows["op"] == "gemm"]
    samples = kernel_samples(gemm, chip).get(("gemm", "bf16")) if len(gemm) else None
    if samples is None or len(samples) < MIN_POINTS:
        return None
    return fit_kernel(samples)[0].launch_s
