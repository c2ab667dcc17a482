"""Capacity per chip for fleet planning: the search layer's steady-state capacity, as a provider."""

from __future__ import annotations

from tokenfab.search.plan_capacity import capacity_per_chip


def predicted_capacity(chip_name: str, model_name: str, slo):
    """Capacity provider for `tokenfab.fleet.plan_fleet`: the best steady state within the SLO over TP
    degrees (`tokenfab.search.capacity.estimate_capacity`, the same function `search` screens with)."""
    from tokenfab.fleet.capacity import CapacityEstimate
    from tokenfab.hardware.catalog import node_power_of

    tokens, power, source, (low, high) = capacity_per_chip(chip_name, model_name, slo.ttft_s, slo.tpot_s,
                                                           slo.input_tokens, slo.output_tokens)
    # the step model's power is at the wall where the catalog knows the chip's server (hardware/nodes.yaml)
    wall = node_power_of(chip_name) is not None
    return CapacityEstimate(tokens_per_s_per_chip=tokens, avg_power_w_per_chip=power, source=source, wall_power=wall,
                            tokens_per_s_per_chip_lo=low, tokens_per_s_per_chip_hi=high)


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
