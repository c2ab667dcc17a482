"""Total cost of ownership of one chip, and its cost per million tokens at an SLO.

    capex      = chip + server share + network share        (network = f / (1 - f) of chip + server)
    IT power   = average chip power x server/chip power ratio
    energy     = IT power x PUE x hours x electricity price
    facility   = IT power x colocation price per kW-month     (building, cooling plant, white space)
    floor      = floor m^2 per chip x price per m^2-year       (only where space is paid for apart
                                                               from colocation; 0 by default)
    per year   = capex / depreciation years + energy + facility + floor
    $/Mtok     = per year / (tokens/s x utilisation x seconds per year) x 1e6

The average chip power is an input at the planned utilisation (the caller, and later
tokenfab's execution model, knows it); so is tokens/s within the SLO. Money is in one
currency, named by `TcoSpec.currency`: the same formulas serve USD defaults and a plan
written in CNY, which is why the money fields carry no `_usd` suffix.
Default figures, each with its source, are in `fleet/data/datacenter.yaml`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tokenfab.units import J_PER_KWH, SECONDS_PER_YEAR
from tokenfab.errors import DataFileError
from tokenfab.hardware.catalog import read_yaml, validation_message
from tokenfab.hardware.spec import Sourced


_DATA = Path(__file__).parent / "data" / "datacenter.yaml"


class DatacenterDefaults(BaseModel):
    """The sourced default figures of fleet/data/datacenter.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: str = Field(pattern=r"^[A-Z]{3}$", description="Currency of the money figures.")
    pue: Sourced
    electricity_price_per_kwh: Sourced
    colocation_per_kw_month: Sourced
    server_share_per_chip: Sourced
    network_frac_of_capex: Sourced
    server_power_ratio: Sourced
    depreciation_years: Sourced
    floor_m2_per_chip: Sourced


@functools.cache
def datacenter_defaults() -> DatacenterDefaults:
    """Default data-center figures (USD), each with its source."""
    try:
        return DatacenterDefaults.model_validate(read_yaml(_DATA))
    except ValidationError as exc:
        raise DataFileError(f"invalid data file {_DATA}: {validation_message(exc)}") from None


class TcoSpec(BaseModel):
    """Everything the TCO of one chip depends on (money in `currency`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="Currency of every money field.")
    chip_price: float = Field(ge=0, description="Purchase or manufacturing cost of one chip.")
    server_share: float = Field(ge=0, description="Non-accelerator server cost per chip (CPUs, DRAM, NICs, chassis).")
    network_frac_of_capex: float = Field(ge=0, lt=1, description="Network's share of total capex.")
    avg_power_w: float = Field(gt=0, description="Average chip power at the planned utilisation, W.")
    server_power_ratio: float = Field(ge=1, le=5, description="Server wall power / chip power.")
    pue: float = Field(ge=1, le=5, description="Facility power / IT power.")
    electricity_price_per_kwh: float = Field(ge=0, description="Electricity price per kWh.")
    colocation_per_kw_month: float = Field(ge=0, description="Facility charge per kW of IT load per month.")
    depreciation_years: float = Field(gt=0, le=30, description="Straight-line service life, years.")
    floor_m2_per_chip: float = Field(default=0.0, ge=0, description="Floor space per chip incl. aisles, m^2.")
    floor_cost_per_m2_year: float = Field(
        default=0.0, ge=0, description="Space rent per m^2-year, where not already in the colocation price."
    )
    tokens_per_s: float = Field(ge=0, description="Tokens/s one chip sustains within the SLO.")
    utilization_frac: float = Field(default=1.0, gt=0, le=1, description="Average load as a fraction of that.")


@dataclass(frozen=True, slots=True)
class TcoEstimate:
    """Per-chip TCO; money in the spec's currency, per year unless named otherwise."""

    currency: str
    capex: float
    chip_price: float
    server_share: float
    network_share: float
    depreciation_per_year: float
    energy_per_year: float
    facility_per_year: float
    floor_per_year: float
    total_per_year: float
    it_power_w: float
    facility_power_w: float
    tokens_per_year: float
    cost_per_million_tokens: float | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def capex_per_chip(chip_price: float, server_share: float, network_frac_of_capex: float) -> float:
    """Chip + server share + the network that makes the pair a fraction `f` of the total."""
    return (chip_price + server_share) / (1.0 - network_frac_of_capex)


def energy_cost_per_year(avg_power_w: float, server_power_ratio: float, pue: float, price_per_kwh: float) -> float:
    """Electricity for one chip's share of server and facility power, per year."""
    return avg_power_w * server_power_ratio * pue * SECONDS_PER_YEAR / J_PER_KWH * price_per_kwh


def facility_cost_per_year(avg_power_w: float, server_power_ratio: float, colocation_per_kw_month: float) -> float:
    """Colocation-style facility charge for one chip's IT power, per year."""
    return avg_power_w * server_power_ratio / 1000.0 * colocation_per_kw_month * 12.0


def estimate_tco(spec: TcoSpec) -> TcoEstimate:
    """Per-chip TCO and cost per million tokens (None when the chip serves no tokens)."""
    capex = capex_per_chip(spec.chip_price, spec.server_share, spec.network_frac_of_capex)
    energy = energy_cost_per_year(spec.avg_power_w, spec.server_power_ratio, spec.pue, spec.electricity_price_per_kwh)
    facility = facility_cost_per_year(spec.avg_power_w, spec.server_power_ratio, spec.colocation_per_kw_month)
    floor = spec.floor_m2_per_chip * spec.floor_cost_per_m2_year
    depreciation = capex / spec.depreciation_years
    total = depreciation + energy + facility + floor
    tokens_per_year = spec.tokens_per_s * spec.utilization_frac * SECONDS_PER_YEAR
    per_million = total / tokens_per_year * 1e6 if tokens_per_year > 0 else None
    it_power = spec.avg_power_w * spec.server_power_ratio
    return TcoEstimate(
        currency=spec.currency,
        capex=capex,
        chip_price=spec.chip_price,
        server_share=spec.server_share,
        network_share=capex - spec.chip_price - spec.server_share,
        depreciation_per_year=depreciation,
        energy_per_year=energy,
        facility_per_year=facility,
        floor_per_year=floor,
        total_per_year=total,
        it_power_w=it_power,
        facility_power_w=it_power * spec.pue,
        tokens_per_year=tokens_per_year,
        cost_per_million_tokens=per_million if per_million is None or math.isfinite(per_million) else None,
    )
