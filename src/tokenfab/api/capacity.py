"""Capacity per chip for fleet planning (to move into the search layer: one step model for all)."""

from __future__ import annotations

import functools

from tokenfab.api.predict import predict
from tokenfab.errors import TokenfabError
from tokenfab.hardware.catalog import load_chip


def _compute_dtype(chip_name: str) -> str:
    chip = load_chip(chip_name)
    for d in ("bf16", "fp16", "fp8", "int8"):
        if chip.supports(d):
            return d
    return next(iter(chip.peak_flop_per_s))


@functools.lru_cache(maxsize=4096)
def _capacity(chip: str, model: str, ttft_s: float, tpot_s: float, input_tokens: int, output_tokens: int):
    """Best steady-state output tokens/s per chip within the SLO, over TP degrees and batch sizes.

    A continuously batched server holding B sequences of I prompt / O output tokens spends, per O
    iterations, O decode steps of the batch plus B single-request prefills (the requests that
    replace the finished ones), so
        effective TPOT = (O * t_decode(B) + B * t_prefill(1)) / O,   TTFT ~ t_prefill(1) + t_decode(B),
        output tokens/s = B * O / (O * t_decode(B) + B * t_prefill(1)).
    t_decode and t_prefill come from `predict`; the best feasible (TP, B) wins.
    """
    from tokenfab.errors import DoesNotFitError
    from tokenfab.fleet.capacity import CapacityEstimate

    dtype = _compute_dtype(chip)
    domain = load_chip(chip).scale_up.domain_size if load_chip(chip).scale_up else 1
    best = None
    for tp in (1, 2, 4, 8):
        if tp > domain:
            break
        try:
            single = predict(model=model, hardware=chip, tp=tp, dtype=dtype, batch=1, input_len=input_tokens, output_len=output_tokens)
        except TokenfabError:
            continue
        if not single.fits:
            continue
        t_prefill, b = single.ttft_s, 1
        while b <= single.max_batch_that_fits:
            r = predict(model=model, hardware=chip, tp=tp, dtype=dtype, batch=b, input_len=input_tokens, output_len=output_tokens)
            cycle = output_tokens * r.tpot_s + b * t_prefill
            tpot_eff, ttft = cycle / output_tokens, t_prefill + r.tpot_s
            if tpot_eff > tpot_s or ttft > ttft_s:
                break
            rate = b * output_tokens / cycle / tp
            power = r.energy_j / r.e2e_s / tp
            if best is None or rate > best[0]:
                best = (rate, power, f"tokenfab predict: tp{tp} batch {b} {dtype} ({single.efficiency_source} curves)")
            b *= 2
    if best is None:
        raise DoesNotFitError(f"{model} cannot meet TTFT {ttft_s * 1e3:.0f} ms / TPOT {tpot_s * 1e3:.0f} ms on {chip} at tp <= 8")
    return CapacityEstimate(tokens_per_s_per_chip=best[0], avg_power_w_per_chip=best[1], source=best[2])


def predicted_capacity(chip_name: str, model_name: str, slo):
    """Capacity provider for `tokenfab.fleet.plan_fleet` backed by the predictor (see `_capacity`)."""
    return _capacity(chip_name, model_name, slo.ttft_s, slo.tpot_s, slo.input_tokens, slo.output_tokens)


def check_plan_models(spec, use_predictor: bool = True) -> None:
    """Refuse a plan whose model has no capacity source: not in the plan's capacity: table and not a
    model the predictor knows. The planner would otherwise report it 'infeasible' (every chip short),
    which hides a typo in the model's name."""
    from tokenfab.errors import InvalidInputError
    from tokenfab.workload.hf_config import load_model

    tabled = {entry.model for entry in spec.capacity}
    for demand in spec.models:
        if demand.name in tabled:
            continue
        if not use_predictor:
            raise InvalidInputError(f"model '{demand.name}' has no row in the plan's capacity: section "
                                    "(and --no-predictor is set); add one or drop --no-predictor")
        load_model(demand.name)  # UnknownNameError naming the closest bundled models
