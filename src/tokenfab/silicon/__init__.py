"""Silicon cost: dies per wafer, yield models, defect-density ramps and the cost of
one good packaged chip (with its sensitivity to each input).

Figures (wafer prices, D0, packaging, HBM) live in `silicon/data/*.yaml`, each with
its source; SMIC N+2's D0 is derived from reported Ascend yields (see nodes.yaml).
"""

from tokenfab.silicon.chip_cost import (
    ChipCostEstimate,
    ChipCostSpec,
    CostInputs,
    SensitivityRow,
    chip_cost_sensitivity,
    cost_from_inputs,
    estimate_chip_cost,
    resolve_cost_inputs,
)
from tokenfab.silicon.process_data import (
    NodeSpec,
    PackagingSpec,
    hbm_usd_per_gb,
    load_node,
    load_packaging,
    node_names,
    packaging_names,
)
from tokenfab.silicon.ramp import DefectRampSpec, defect_density_at
from tokenfab.silicon.wafer import gross_dies_per_wafer, whole_dies_per_wafer
from tokenfab.silicon.yield_models import (
    YIELD_MODELS,
    YieldModel,
    defect_density_from_yield,
    die_yield_frac,
    yield_from_defects_per_die,
)

__all__ = [
    "YIELD_MODELS",
    "ChipCostEstimate",
    "ChipCostSpec",
    "CostInputs",
    "DefectRampSpec",
    "NodeSpec",
    "PackagingSpec",
    "SensitivityRow",
    "YieldModel",
    "chip_cost_sensitivity",
    "cost_from_inputs",
    "defect_density_at",
    "defect_density_from_yield",
    "die_yield_frac",
    "estimate_chip_cost",
    "gross_dies_per_wafer",
    "hbm_usd_per_gb",
    "load_node",
    "load_packaging",
    "node_names",
    "packaging_names",
    "resolve_cost_inputs",
    "whole_dies_per_wafer",
    "yield_from_defects_per_die",
]
