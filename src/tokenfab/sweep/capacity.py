"""Serving capacity of one design point at an SLO: the sweep's one seam to the capacity function.

`capacity_at_slo` is the steady-state capacity of `tokenfab.api.capacity` (the function
`plan` uses, moving to `tokenfab.search.capacity`) applied to a ChipSpec instead of a catalog
name: the same TP x batch walk over the same `estimate_static_batch` that `predict` runs, on
a system of the point's chip. When the search layer's capacity function lands on main and
accepts a chip spec, this module's body becomes one call to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenfab.errors import DoesNotFitError, TokenfabError
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.memory import MemoryModel
from tokenfab.execution.predict import estimate_static_batch
from tokenfab.execution.step import StepModel
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.catalog import system_of_chip
from tokenfab.hardware.spec import ChipSpec
from tokenfab.workload.spec import ModelSpec

TP_DEGREES = (1, 2, 4, 8)


@dataclass(frozen=True, slots=True)
class PointCapacity:
    """Best steady-state serving of one model on one design within the SLO, per chip."""

    tokens_per_s_per_chip: float
    avg_power_w_per_chip: float
    tp: int
    batch: int
    ttft_s: float
    tpot_s: float


def compute_dtype(chip: ChipSpec) -> str:
    """The format the capacity runs in: the first of bf16, fp16, fp8, int8 the chip has (as `plan` does)."""
    for d in ("bf16", "fp16", "fp8", "int8"):
        if chip.supports(d):
            return d
    return next(iter(chip.peak_flop_per_s))


def capacity_at_slo(chip: ChipSpec, model: ModelSpec, slo: SLOSpec) -> PointCapacity:
    """Best output tokens/s per chip within the SLO over TP degrees and batch sizes.

    A continuously batched server holding B sequences spends, per O output tokens, O decode
    steps of the batch plus B single-request prefills, so
        effective TPOT = (O t_decode(B) + B t_prefill(1)) / O,   TTFT ~ t_prefill(1) + t_decode(B),
        tokens/s = B O / (O t_decode(B) + B t_prefill(1)) / TP;
    batches double from 1 while both SLOs hold (the walk of `tokenfab.api.capacity`).
    """
    dtype = compute_dtype(chip)
    prec = PrecisionConfig(dtype=dtype)
    domain = chip.scale_up.domain_size if chip.scale_up else 1
    inp, outp = slo.input_tokens, slo.output_tokens
    best: PointCapacity | None = None
    for tp in TP_DEGREES:
        if tp > domain:
            break
        try:
            system, par = system_of_chip(chip, tp), ParallelConfig(tp=tp)
            sm, mem = StepModel(model, system, par, prec), MemoryModel(model, system, par, prec)
            single = estimate_static_batch(sm, mem, 1, inp, outp)
        except TokenfabError:
            continue
        if not single.fits:
            continue
        t_prefill, b = single.ttft_s, 1
        while b <= single.max_batch_that_fits:
            r = single if b == 1 else estimate_static_batch(sm, mem, b, inp, outp)
            cycle = outp * r.tpot_s + b * t_prefill
            if cycle / outp > slo.tpot_s or t_prefill + r.tpot_s > slo.ttft_s:
                break
            rate = b * outp / cycle / tp
            if best is None or rate > best.tokens_per_s_per_chip:
                best = PointCapacity(rate, r.energy_j / r.e2e_s / tp, tp, b, t_prefill + r.tpot_s, cycle / outp)
            b *= 2
    if best is None:
        raise DoesNotFitError(f"{model.name} cannot meet TTFT {slo.ttft_s * 1e3:.0f} ms / TPOT "
                              f"{slo.tpot_s * 1e3:.0f} ms on {chip.name} at tp <= {min(domain, TP_DEGREES[-1])}")
    return best
