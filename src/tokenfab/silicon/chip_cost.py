"""Cost of one good, packaged accelerator from wafer price, die size and yield.

    silicon   = num_dies * wafer_price / (whole dies per wafer * die yield)
    chip cost = (silicon + HBM + packaging + test/assembly) / assembly yield + design amortisation

The model is deliberately the analyst's bill of materials (CSET, Silicon Analysts,
Epoch AI), not a foundry's internal cost: the inputs are the ones public sources
quote, so every default can be traced to a row in the node and packaging data files.
Known-good-die testing is assumed (a bad die is discarded before packaging), so the
only loss after packaging is `assembly_yield_frac`.

`chip_cost_sensitivity` perturbs each input by +/-X% and reports the swing and the
elasticity (percent change in cost per percent change in input): the tornado chart
a planner needs to see which assumption matters (usually D0 for big dies on a young
node, HBM for small dies on a mature one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tokenfab.errors import InvalidInputError
from tokenfab.silicon.process_data import (
    hbm_usd_per_gb,
    load_node,
    load_packaging,
    wafer_defaults,
)
from tokenfab.silicon.ramp import DefectRampSpec, defect_density_at
from tokenfab.silicon.wafer import whole_dies_per_wafer
from tokenfab.silicon.yield_models import YieldModel, die_yield_frac
from tokenfab.units import bytes_to_gb


class ChipCostSpec(BaseModel):
    """What a chip is made of; unset fields take the node's and packaging's data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: str = Field(description="Process node key in silicon/data/nodes.yaml, e.g. 'smic-n+2'.")
    die_area_mm2: float = Field(gt=0, le=5000, description="Area of one compute die, mm^2.")
    num_dies: int = Field(default=1, ge=1, le=64, description="Compute dies in one package.")
    hbm_capacity_bytes: float = Field(default=0.0, ge=0, description="HBM on the package, bytes (decimal GB x 1e9).")
    packaging: str = Field(default="cowos-s-class", description="Packaging kind key in silicon/data/packaging.yaml.")
    defect_density_per_cm2: float | None = Field(
        default=None, gt=0, le=100, description="Fixed D0; default: the node's mature D0. Exclusive with `ramp`."
    )
    ramp: DefectRampSpec | None = Field(default=None, description="A D0 learning curve (see silicon.ramp).")
    yield_model: YieldModel | None = Field(default=None, description="Default: the model the node's D0 was read under.")
    clustering_alpha: float | None = Field(default=None, gt=0, le=100, description="Negative-binomial alpha.")
    wafer_price_usd: float | None = Field(default=None, gt=0, description="Override of the node's wafer price, USD.")
    hbm_usd_per_gb: float | None = Field(default=None, ge=0, description="Override of the HBM price per decimal GB.")
    packaging_usd: float | None = Field(default=None, ge=0, description="Override of the packaging cost, USD.")
    test_assembly_usd: float | None = Field(default=None, ge=0, description="Override of test and assembly, USD.")
    assembly_yield_frac: float = Field(
        default=1.0, gt=0, le=1, description="Packages that pass final test (known-good dies assumed)."
    )
    design_amortization_usd: float = Field(
        default=0.0, ge=0, description="Design/NRE cost spread over each chip, USD (CSET 2020: ~$108 at 5nm)."
    )
    wafer_diameter_mm: float | None = Field(default=None, gt=0, le=450, description="Default 300 mm.")
    edge_exclusion_mm: float | None = Field(default=None, ge=0, le=20, description="Unprinted ring at the edge, mm.")
    scribe_width_mm: float | None = Field(default=None, ge=0, le=2, description="Saw street between dies, mm.")

    @field_validator("node")
    @classmethod
    def _known_node(cls, node: str) -> str:
        load_node(node)  # UnknownNameError (with nearest names) propagates as is
        return node

    @field_validator("packaging")
    @classmethod
    def _known_packaging(cls, packaging: str) -> str:
        load_packaging(packaging)
        return packaging

    @model_validator(mode="after")
    def _one_defect_source(self) -> ChipCostSpec:
        if self.defect_density_per_cm2 is not None and self.ramp is not None:
            raise ValueError("give either defect_density_per_cm2 or ramp, not both")
        node = load_node(self.node)
        if self.defect_density_per_cm2 is None and self.ramp is None and node.defect_density_per_cm2 is None:
            raise ValueError(f"node '{self.node}' has no published D0: give defect_density_per_cm2 or ramp")
        model = self.yield_model or node.yield_model
        if model == "negative-binomial" and (self.clustering_alpha or node.clustering_alpha) is None:
            raise ValueError("the negative-binomial yield model needs clustering_alpha")
        return self


@dataclass(frozen=True, slots=True)
class CostInputs:
    """Every number the cost formula uses, resolved from spec + data (perturbable)."""

    die_area_mm2: float
    num_dies: int
    defect_density_per_cm2: float
    yield_model: str
    clustering_alpha: float | None
    wafer_price_usd: float
    hbm_gb: float
    hbm_usd_per_gb: float
    packaging_usd: float
    test_assembly_usd: float
    assembly_yield_frac: float
    design_amortization_usd: float
    wafer_diameter_mm: float
    edge_exclusion_mm: float
    scribe_width_mm: float


@dataclass(frozen=True, slots=True)
class ChipCostEstimate:
    """Cost of one good packaged chip and how it splits (all USD, per good chip)."""

    cost_per_good_chip_usd: float
    silicon_usd: float
    hbm_usd: float
    packaging_usd: float
    test_assembly_usd: float
    assembly_loss_usd: float
    design_amortization_usd: float
    whole_dies_per_wafer: int
    die_yield_frac: float
    good_dies_per_wafer: float
    good_chips_per_wafer: float
    defect_density_per_cm2: float
    wafer_price_usd: float
    source: str = "analytic"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_cost_inputs(spec: ChipCostSpec, years_since_ramp_start: float | None = None) -> CostInputs:
    """Fill every unset field of `spec` from the node, packaging and wafer data."""
    node = load_node(spec.node)
    pack = load_packaging(spec.packaging)
    geometry = wafer_defaults()
    if spec.ramp is not None:
        d0 = defect_density_at(spec.ramp, years_since_ramp_start or 0.0)
    elif spec.defect_density_per_cm2 is not None:
        d0 = spec.defect_density_per_cm2
    else:
        assert node.defect_density_per_cm2 is not None  # checked by the spec validator
        d0 = node.defect_density_per_cm2.value
    return CostInputs(
        die_area_mm2=spec.die_area_mm2,
        num_dies=spec.num_dies,
        defect_density_per_cm2=d0,
        yield_model=spec.yield_model or node.yield_model,
        clustering_alpha=spec.clustering_alpha or node.clustering_alpha,
        wafer_price_usd=spec.wafer_price_usd or node.wafer_price_usd.value,
        hbm_gb=bytes_to_gb(spec.hbm_capacity_bytes),
        hbm_usd_per_gb=_or(spec.hbm_usd_per_gb, hbm_usd_per_gb().value),
        packaging_usd=_or(spec.packaging_usd, pack.packaging_usd.value),
        test_assembly_usd=_or(spec.test_assembly_usd, pack.test_assembly_usd.value),
        assembly_yield_frac=spec.assembly_yield_frac,
        design_amortization_usd=spec.design_amortization_usd,
        wafer_diameter_mm=_or(spec.wafer_diameter_mm, geometry.wafer_diameter_mm.value),
        edge_exclusion_mm=_or(spec.edge_exclusion_mm, geometry.edge_exclusion_mm.value),
        scribe_width_mm=_or(spec.scribe_width_mm, geometry.scribe_width_mm.value),
    )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def cost_from_inputs(inputs: CostInputs) -> ChipCostEstimate:
    """The cost formula itself, on fully resolved inputs."""
    dies = whole_dies_per_wafer(
        inputs.die_area_mm2,
        wafer_diameter_mm=inputs.wafer_diameter_mm,
        edge_exclusion_mm=inputs.edge_exclusion_mm,
        scribe_width_mm=inputs.scribe_width_mm,
    )
    die_yield = die_yield_frac(
        inputs.defect_density_per_cm2, inputs.die_area_mm2, inputs.yield_model, inputs.clustering_alpha
    )
    good_dies = dies * die_yield
    if good_dies <= 0:
        raise InvalidInputError(
            f"a {inputs.die_area_mm2} mm^2 die yields no good dies on a {inputs.wafer_diameter_mm} mm wafer"
        )
    silicon = inputs.num_dies * inputs.wafer_price_usd / good_dies
    hbm = inputs.hbm_gb * inputs.hbm_usd_per_gb
    before_assembly = silicon + hbm + inputs.packaging_usd + inputs.test_assembly_usd
    after_assembly = before_assembly / inputs.assembly_yield_frac
    return ChipCostEstimate(
        cost_per_good_chip_usd=after_assembly + inputs.design_amortization_usd,
        silicon_usd=silicon,
        hbm_usd=hbm,
        packaging_usd=inputs.packaging_usd,
        test_assembly_usd=inputs.test_assembly_usd,
        assembly_loss_usd=after_assembly - before_assembly,
        design_amortization_usd=inputs.design_amortization_usd,
        whole_dies_per_wafer=dies,
        die_yield_frac=die_yield,
        good_dies_per_wafer=good_dies,
        good_chips_per_wafer=good_dies / inputs.num_dies * inputs.assembly_yield_frac,
        defect_density_per_cm2=inputs.defect_density_per_cm2,
        wafer_price_usd=inputs.wafer_price_usd,
    )


def estimate_chip_cost(spec: ChipCostSpec, *, years_since_ramp_start: float | None = None) -> ChipCostEstimate:
    """Cost per good chip; with a `ramp`, D0 is read `years_since_ramp_start` years in."""
    return cost_from_inputs(resolve_cost_inputs(spec, years_since_ramp_start))


@dataclass(frozen=True, slots=True)
class SensitivityRow:
    """One bar of the tornado: cost with one input at -X% and +X%."""

    input: str
    base_value: float
    low_cost_usd: float
    high_cost_usd: float
    swing_usd: float
    elasticity: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_PERTURBED = (
    "die_area_mm2",
    "defect_density_per_cm2",
    "wafer_price_usd",
    "hbm_usd_per_gb",
    "packaging_usd",
    "test_assembly_usd",
    "assembly_yield_frac",
    "clustering_alpha",
)


def chip_cost_sensitivity(
    spec: ChipCostSpec, *, delta_frac: float = 0.1, years_since_ramp_start: float | None = None
) -> list[SensitivityRow]:
    """Tornado rows, largest swing first; inputs that are zero or unused are skipped.

    Elasticity = (cost(+X%) - cost(-X%)) / (2 X cost): +1 means cost moves one for one.
    Assembly yield is capped at 1, so its upper bar may be shorter than its lower.
    """
    if not 0 < delta_frac < 1:
        raise InvalidInputError(f"sensitivity step must lie in (0, 1), got {delta_frac}")
    base_inputs = resolve_cost_inputs(spec, years_since_ramp_start)
    base = cost_from_inputs(base_inputs).cost_per_good_chip_usd
    rows = []
    for name in _PERTURBED:
        value = getattr(base_inputs, name)
        if not value:
            continue
        low_value, high_value = value * (1 - delta_frac), value * (1 + delta_frac)
        if name == "assembly_yield_frac":
            high_value = min(high_value, 1.0)
        low = cost_from_inputs(dataclasses.replace(base_inputs, **{name: low_value})).cost_per_good_chip_usd
        high = cost_from_inputs(dataclasses.replace(base_inputs, **{name: high_value})).cost_per_good_chip_usd
        rows.append(
            SensitivityRow(
                input=name,
                base_value=value,
                low_cost_usd=low,
                high_cost_usd=high,
                swing_usd=abs(high - low),
                elasticity=(high - low) / (2 * delta_frac * base),
            )
        )
    return sorted(rows, key=lambda row: row.swing_usd, reverse=True)
