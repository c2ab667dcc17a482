"""The pooled (generic) fused-MoE fit: what a chip that never ran the MoE kernel inherits.

A fused MoE layer's fixed cost is the engine's chain of small kernels (routing, permute, two grouped
GEMMs, activation, finalize): 52 us on A100, 45-50 us on H100, 26-44 us on L40S, 19 us on B200 in
ops_moe.csv. At a few tokens each of those kernels is latency bound: it takes a number of cycles, not of
bytes or FLOPs, so the pooled fit counts the fixed cost in thousands of cycles of each chip's clock
(`ChipSpec.clock_hz`): the rows of chip c are fitted as

    t / u_c = r + blend(F / (P u_c ce u), B / (BW u_c me)),   u_c = 1000 / clock_c

which is the shared kernel formula with time in units of u_c (the least-squares residuals are log-time,
so the scaling changes nothing else), and r = `moe_launch_kilocycles` is what the profile stores. In
kilocycles the CUTLASS chains agree across chips (A100 73, L40S gated 65, H100 and L40S non-gated top-22
84-110), where the earlier unit, each chip's bf16 dense-GEMM fixed cost on ops_gemm.csv (kernels timed one by
one, host time in it: A100 6.4 us, H100 3.6 us), put them 5.9-14 apart. Leave-one-chip-out on ops_moe.csv
(bench/accuracy_moe.py, 'moe-layer:unseen-chip') went 21.8% -> 16.9% with the clock (all rows, with the cache
ramp of `cost.kernel`), measured then with the held chip's own dense GEMM fits still in its resolution; under the
one leave-one-chip-out definition (`calibrate.unseen`: nothing of the held chip but its spec) it reads 16.6%
(A100 15.9%, H100 14.7%, L40S 15.9%; B200 40.1%, whose TensorRT-LLM-gen chain, about 41 kilocycles on its own
fit, is shorter than any pooled chip's 65-111: at 1 token its layers are over-predicted by 85%). A chip without a stated
clock takes its dense-GEMM fixed cost over the pooled chips' in kilocycles (`ResolvedProfile.moe_cycle_s`).

Which work form a kernel follows (one CTA column per active expert; one per row block of TILE rows of each
expert; or TensorRT-LLM-gen's token tile, which pads every active expert's rows to a tile sized from all
tokens: `cost.moe.moe_work`, `cost.moe.MOE_FORMS`) depends on how the backend tiles M, which no chip spec states
(where a kernel's source fixes it and the resolved fit is of another kind, `cost.moe.resolved_moe_form` uses the
kernel's own tiling: B200 left out 40.1% -> 35.4%, all rows 16.6% -> 16.4%);
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

# Whether the MoE fits learn a ramp around their cache capacity (`cost.kernel`, `cache_ramp_frac`) instead of a step.
FIT_CACHE_RAMP = True
# Bound of the fitted fixed cost in kilocycles: the kernel chain is a handful of kernels (37-110 on the measured chips).
MAX_LAUNCH_KILOCYCLES = 500.0


def scaled_by_launch(samples: KernelSamples, unit_s: float) -> KernelSamples:
    """`samples` with time in units of `unit_s` (a chip's thousand cycles; peaks and bandwidths scaled to match)."""
    if unit_s <= 0.0:
        raise InvalidInputError(f"the unit of a chip's MoE fixed cost must be > 0 s to scale its rows, got {unit_s}")
    return KernelSamples(samples.flops, samples.dram_bytes, samples.peak * unit_s,
                         samples.bandwidth * unit_s, samples.work_units, samples.compute_units,
                         samples.cache_bytes, samples.time_s / unit_s)


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
        params, q = fit_kernel(forms[form], upper=upper, fit_ramp=FIT_CACHE_RAMP)
        loss = fit_loss(params, forms[form])
        if best is None or loss < best[3]:
            best = (params, q, form, loss)
    if best is None:
        raise InvalidInputError(f"no MoE work form to fit (known: {', '.join(MOE_FORMS)})")
    return best[0], best[1], best[2]


def fit_pooled_moe(parts: list[tuple[KernelSamples, float]], upper: np.ndarray | None,
                   forms: dict[str, list[KernelSamples]] | None = None) -> tuple[KernelParams, FitQuality, float, str]:
    """Fit one MoE kind on several chips' rows, each given with its chip's unit of fixed cost in seconds (`parts`,
    counted in the 'columns' form; one thousand cycles of its clock), and in `forms` the same rows counted in the
    other work forms (form -> one samples per part).

    Returns (efficiencies with launch_s = the fixed cost r in units, fit quality, r, work form); the caller turns r
    into seconds for a chip with `r x that chip's unit`."""
    bounds = (UPPER if upper is None else upper).copy()
    bounds[0] = MAX_LAUNCH_KILOCYCLES
    units = [unit for _, unit in parts]
    scaled = {"columns": KernelSamples.concat([scaled_by_launch(s, unit) for s, unit in parts])}
    for form, samples in (forms or {}).items():
        if form != "columns":
            scaled[form] = KernelSamples.concat([scaled_by_launch(t, unit) for t, unit in zip(samples, units)])
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
