"""Plan-file specs for what the fleet shares and pays once: components, NRE, power build-out, utilisation.

Why a module of its own: these are the planner's *coupling* resources. A chip option on its
own has a price and a supply; a component (HBM stacks of one generation, advanced-packaging
slots, wafer starts on one node) is consumed by every option whose bill of materials names
it, so one scarce part limits several chips at once (the Ascend 910C and an in-house NPU
both need domestic HBM and domestic packaging). NRE is paid once if a chip is built at all
(a build-or-not binary), and facility power can be built, with a lead time, at a price.

Units: component supply is a count per period in the component's `unit` (stacks, packages,
wafers); power in W; money in the plan currency unless written as a MoneySpec.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenfab.silicon.chip_cost import ChipCostSpec
from tokenfab.silicon.process_data import load_nre

PerPeriod = float | dict[str, float]
"""A number for every period, or a step function keyed by period label (see fleet.periods)."""

_NAME = r"^[a-z0-9][a-z0-9.+_\-]*$"
_CURRENCY = r"^[A-Z]{3}$"
Basis = Literal["vendor-list", "press", "analyst-estimate", "derived", "assumption", "measured", ""]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MoneySpec(_Frozen):
    """An amount in a named currency, with where and when it comes from."""

    value: float = Field(ge=0, description="Amount in `currency`.")
    currency: str = Field(pattern=_CURRENCY, description="ISO 4217 code, e.g. 'USD', 'CNY'.")
    source: str = Field(default="", description="URL or citation for the figure.")
    date: str = Field(default="", description="When the figure was quoted, e.g. '2025-02' (market prices move).")
    basis: Basis = Field(default="", description="What kind of figure it is (a list price, an estimate, ...).")


Money = float | MoneySpec
"""A bare number (the plan currency) or a MoneySpec."""


class ComponentSpec(_Frozen):
    """A part several chip options consume, with a limited supply per period."""

    name: str = Field(pattern=_NAME, description="Component name used in bills of materials and scenarios.")
    kind: Literal["hbm", "packaging", "wafers", "other"] = Field(description="What sort of part it is.")
    unit: str = Field(min_length=1, description="What one unit is: 'stacks', 'packages', 'wafers'.")
    supply: PerPeriod = Field(description="Units available to this fleet per period (a step function).")
    source: str = Field(min_length=1, description="Where the supply figure comes from, or 'assumption: ...'.")
    basis: Basis = Field(default="assumption", description="Kind of figure (most supply shares are assumptions).")


class BillOfMaterialsSpec(_Frozen):
    """What one delivered chip consumes of the plan's components.

    Wafer use per chip is num_dies / good dies per wafer, from the silicon model: for a
    manufactured option from its `chip_cost` (and the scenario's yield ramp), for a bought
    option from `silicon` when it is given (a foundry's wafers shared with our own chip).
    """

    wafers: str | None = Field(default=None, description="Component of wafer starts the dies are made on.")
    silicon: ChipCostSpec | None = Field(
        default=None, description="Die and node of a bought chip, to count its wafers (manufactured: its chip_cost)."
    )
    years_into_ramp_at_start: float = Field(
        default=0.0, ge=0, le=50, description="How far `silicon`'s yield ramp has run when the plan starts, years."
    )
    hbm: str | None = Field(default=None, description="HBM component the package carries.")
    hbm_stacks_per_chip: int = Field(default=0, ge=0, le=64, description="HBM stacks per package.")
    packaging: str | None = Field(default=None, description="Packaging component (one unit per chip).")
    other: dict[str, float] = Field(default_factory=dict, description="Further component -> units per chip.")

    @model_validator(mode="after")
    def _consistent(self) -> BillOfMaterialsSpec:
        if (self.hbm is None) != (self.hbm_stacks_per_chip == 0):
            raise ValueError("bill_of_materials: give hbm together with hbm_stacks_per_chip > 0")
        bad = {k: v for k, v in self.other.items() if not 0 <= v <= 1e6}
        if bad:
            raise ValueError(f"bill_of_materials.other: units per chip must lie in [0, 1e6], got {bad}")
        return self

    def components(self) -> list[str]:
        """Every component this bill names."""
        named = [self.wafers, self.hbm, self.packaging, *self.other]
        return [name for name in named if name is not None]


class NreSpec(_Frozen):
    """One-off cost of a new chip, paid if (and only if) the planner decides to build it."""

    design: Money | None = Field(
        default=None, description="Design, verification, masks and IP licences (default: the `reference` figure)."
    )
    reference: str | None = Field(
        default=None, description="Node class in silicon/data/nre.yaml whose headline design cost (USD) is used."
    )
    software: Money = Field(default=0.0, description="Compiler, kernels and serving-stack work for the new chip.")
    source: str = Field(min_length=1, description="Where the figures come from (see silicon/data/nre.yaml).")
    ready_period: str | None = Field(
        default=None, description="First period whose deliveries the new chip can make (design and tape-out time)."
    )
    spend_period: str | None = Field(default=None, description="Period the NRE is paid in (default: the first).")

    @model_validator(mode="after")
    def _one_design_figure(self) -> NreSpec:
        if (self.design is None) == (self.reference is None):
            raise ValueError("nre: give exactly one of design (an amount) or reference (a node class in nre.yaml)")
        if self.reference is not None:
            load_nre(self.reference)  # UnknownNameError with the nearest node classes
        return self


class PowerBuildSpec(_Frozen):
    """New facility power the planner may build: a price per MW and a lead time."""

    cost_per_mw: Money = Field(description="Capex per MW of facility (grid) power, building and cooling included.")
    lead_time_periods: int = Field(default=2, ge=0, le=40, description="Periods from decision to energised.")
    max_mw_per_period: PerPeriod | None = Field(
        default=None, description="Most MW that can be started per period (None: unlimited)."
    )
    life_years: float = Field(default=15.0, gt=0, le=60, description="Depreciation life of a building, years.")
    source: str = Field(min_length=1, description="Where the cost and lead time come from.")


class UtilizationSpec(_Frozen):
    """How hard a chip may be run and how much headroom the peak needs."""

    max_utilization_frac: float = Field(
        default=1.0, gt=0, le=1, description="Share of a chip's SLO capacity the plan may count on (failures, drains)."
    )
    peak_headroom_frac: float = Field(
        default=0.0, ge=0, le=10, description="Capacity beyond the stated demand peak (bursts, forecast error)."
    )
    source: str = Field(default="", description="Why these figures (an operator target, an SRE rule of thumb).")


class PoolSpec(_Frozen):
    """A disaggregated serving pool as one purchasable unit: 1 prefill chip + `decode_per_prefill` decode chips.

    The capacity provider is asked for the pool under its `capacity_key` (e.g.
    'pd:h200-sxm+h20:2'), so a provider that models P/D pools (search's best layout per
    chip pair) can answer with tokens/s and watts per pool unit, and a plan's `capacity:`
    table can list the same key. `parse_pool_key` turns the key back into the three fields.
    """

    prefill_chip: str = Field(min_length=1, description="Catalog chip that runs prefill.")
    decode_chip: str = Field(min_length=1, description="Catalog chip that runs decode.")
    decode_per_prefill: float = Field(gt=0, le=64, description="Decode chips per prefill chip in the pool.")

    @property
    def capacity_key(self) -> str:
        return f"pd:{self.prefill_chip}+{self.decode_chip}:{self.decode_per_prefill:g}"

    @property
    def num_chips(self) -> float:
        """Chips in one pool unit (for server share and floor space per unit)."""
        return 1.0 + self.decode_per_prefill


def parse_pool_key(name: str) -> PoolSpec | None:
    """The PoolSpec a capacity key names, or None if `name` is not a pool key."""
    if not name.startswith("pd:") or "+" not in name or name.count(":") != 2:
        return None
    chips, ratio = name[3:].rsplit(":", 1)
    prefill, decode = chips.split("+", 1)
    try:
        return PoolSpec(prefill_chip=prefill, decode_chip=decode, decode_per_prefill=float(ratio))
    except (ValueError, TypeError):
        return None
