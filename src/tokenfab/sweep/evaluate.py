"""One design point: silicon cost, serving capacity at the SLO, and cost per million tokens.

    cost per good die  silicon layer: dies per wafer, yield and wafer price of the point's
                       die area and node, plus HBM of its capacity and packaging (USD)
    tokens/s per chip  `sweep.capacity.capacity_at_slo`: plan's steady-state capacity of the
                       design (best TP degree, default engine, SLO at its 99th percentile)
    tokens/s per watt  that rate over the average chip power while serving it
    CNY per Mtok       fleet TCO of one chip bought at its manufacturing cost (a chip
                       maker's view, not a market price) with the data-center defaults,
                       converted at the sourced rate in sweep/data/money.yaml
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tokenfab.errors import InvalidInputError, TokenfabError
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.fleet.tco import capex_per_chip, datacenter_defaults, energy_cost_per_year, facility_cost_per_year
from tokenfab.hardware.catalog import read_yaml, validation_message
from tokenfab.hardware.spec import ChipSpec, Sourced
from tokenfab.silicon import ChipCostSpec, estimate_chip_cost
from tokenfab.sweep.capacity import PointCapacity, capacity_at_slo
from tokenfab.sweep.knobs import silicon_node
from tokenfab.units import SECONDS_PER_YEAR
from tokenfab.workload.spec import ModelSpec

_MONEY = Path(__file__).parent / "data" / "money.yaml"


@functools.cache
def cny_per_usd() -> Sourced:
    """The sourced exchange rate the CNY figures use."""
    return Sourced.model_validate(read_yaml(_MONEY)["cny_per_usd"])


@dataclass(frozen=True, slots=True)
class PointResult:
    """Outputs of one design point for one model (NaN where the model cannot meet the SLO)."""

    knobs: dict[str, Any]
    model: str
    cost_per_good_die: float  # USD per good packaged chip
    tokens_per_s_per_chip: float
    tokens_per_s_per_w: float
    cost_per_mtok: float  # CNY per million output tokens
    avg_power_w: float
    tp: int
    batch: int  # mean running sequences per replica of the best deployment
    ttft_s: float  # TTFT and TPOT at the SLO percentile there (NaN where the SLO cannot be met)
    tpot_s: float
    note: str = ""

    def to_dict(self) -> dict:
        d = {"knobs": dict(self.knobs), "model": self.model}
        for name in ("cost_per_good_die", "tokens_per_s_per_chip", "tokens_per_s_per_w", "cost_per_mtok", "avg_power_w",
                     "ttft_s", "tpot_s"):
            value = getattr(self, name)
            d[name] = None if math.isnan(value) else value
        d.update(tp=self.tp, batch=self.batch, note=self.note)
        return d


def good_die_cost_usd(chip: ChipSpec) -> float:
    """Cost of one good packaged chip of this design (silicon layer defaults for the node)."""
    return _die_cost(silicon_node(chip), chip.die_area_mm2.value if chip.die_area_mm2 else None, chip.num_dies,
                     chip.memory_capacity_bytes if chip.memory.kind != "none" else 0.0, chip.name)


@functools.lru_cache(maxsize=65536)
def _die_cost(node: str, area_mm2: float | None, num_dies: int, hbm_bytes: float, name: str) -> float:
    if area_mm2 is None:
        raise InvalidInputError(f"{name} has no die_area_mm2: give one with --vary die_area_mm2=LO:HI:N")
    try:
        spec = ChipCostSpec(node=node, die_area_mm2=area_mm2, num_dies=num_dies, hbm_capacity_bytes=hbm_bytes)
    except ValidationError as exc:  # e.g. a die area beyond what a wafer holds
        raise InvalidInputError(f"cost of {name}: {validation_message(exc)}") from None
    return estimate_chip_cost(spec).cost_per_good_chip_usd


def cost_per_mtok_cny(chip_cost_usd: float, capacity: PointCapacity) -> float:
    """CNY per million tokens of one chip serving at its SLO capacity all year (fleet.tco formulas)."""
    dc = datacenter_defaults()
    capex = capex_per_chip(chip_cost_usd, dc.server_share_per_chip.value, dc.network_frac_of_capex.value)
    per_year = (capex / dc.depreciation_years.value
                + energy_cost_per_year(capacity.avg_power_w_per_chip, dc.server_power_ratio.value, dc.pue.value,
                                       dc.electricity_price_per_kwh.value)
                + facility_cost_per_year(capacity.avg_power_w_per_chip, dc.server_power_ratio.value,
                                         dc.colocation_per_kw_month.value))
    per_mtok_usd = per_year / (capacity.tokens_per_s_per_chip * SECONDS_PER_YEAR) * 1e6
    return per_mtok_usd * cny_per_usd().value


def finish_point(knobs: dict[str, Any], model: str, die_cost: float, capacity: PointCapacity | None, note: str = "") -> PointResult:
    """Package a point from its die cost and capacity (None: the SLO cannot be met)."""
    if capacity is None:
        nan = float("nan")
        return PointResult(knobs, model, die_cost, nan, nan, nan, nan, 0, 0, nan, nan, note)
    return PointResult(
        knobs, model, die_cost, capacity.tokens_per_s_per_chip,
        capacity.tokens_per_s_per_chip / capacity.avg_power_w_per_chip, cost_per_mtok_cny(die_cost, capacity),
        capacity.avg_power_w_per_chip, capacity.tp, capacity.batch, capacity.ttft_s, capacity.tpot_s, note,
    )


def evaluate_point(chip: ChipSpec, knobs: dict[str, Any], model: ModelSpec, slo: SLOSpec) -> PointResult:
    """The slow, reference path: one point through `capacity_at_slo` (see sweep.fast for the batched one)."""
    die_cost = good_die_cost_usd(chip)
    try:
        capacity = capacity_at_slo(chip, model, slo)
    except TokenfabError as exc:
        return finish_point(knobs, model.name, die_cost, None, str(exc))
    return finish_point(knobs, model.name, die_cost, capacity)
