"""Cost per good chip: hand-checked formula, yield monotonicity, sensitivity, data provenance."""

import math

import pytest
from pydantic import ValidationError

from tokenfab.errors import UnknownNameError
from tokenfab.silicon import (
    ChipCostSpec,
    DefectRampSpec,
    chip_cost_sensitivity,
    defect_density_from_yield,
    estimate_chip_cost,
    load_node,
    load_packaging,
    node_names,
    packaging_names,
)

pytestmark = pytest.mark.unit


def _simple(**kwargs):
    """A 10 x 10 mm die on a bare 300 mm wafer: 640 whole dies (the H&P example)."""
    base = dict(
        node="tsmc-n7",
        die_area_mm2=100.0,
        defect_density_per_cm2=0.1,
        yield_model="poisson",
        wafer_price_usd=10_000.0,
        packaging="conventional",
        edge_exclusion_mm=0.0,
        scribe_width_mm=0.0,
    )
    return ChipCostSpec(**{**base, **kwargs})


def test_cost_by_hand():
    estimate = estimate_chip_cost(_simple())
    good = 640 * math.exp(-0.1)  # 579.10
    assert estimate.whole_dies_per_wafer == 640
    assert estimate.good_dies_per_wafer == pytest.approx(good)
    assert estimate.silicon_usd == pytest.approx(10_000.0 / good)
    # + CSET's $80 conventional packaging-and-test, no HBM
    assert estimate.cost_per_good_chip_usd == pytest.approx(10_000.0 / good + 80.0)


def test_hbm_assembly_yield_and_design_cost():
    estimate = estimate_chip_cost(
        _simple(hbm_capacity_bytes=80e9, hbm_usd_per_gb=15.0, assembly_yield_frac=0.9, design_amortization_usd=100.0)
    )
    before = 10_000.0 / (640 * math.exp(-0.1)) + 80 * 15.0 + 80.0
    assert estimate.hbm_usd == pytest.approx(1200.0)
    assert estimate.cost_per_good_chip_usd == pytest.approx(before / 0.9 + 100.0)
    assert estimate.assembly_loss_usd == pytest.approx(before / 0.9 - before)


def test_two_dies_cost_twice_the_silicon_and_halve_the_chips_per_wafer():
    one, two = estimate_chip_cost(_simple()), estimate_chip_cost(_simple(num_dies=2))
    assert two.silicon_usd == pytest.approx(2 * one.silicon_usd)
    assert two.good_chips_per_wafer == pytest.approx(one.good_chips_per_wafer / 2)


def test_cost_falls_when_yield_rises():
    costs = [
        estimate_chip_cost(_simple(defect_density_per_cm2=d0)).cost_per_good_chip_usd for d0 in (0.5, 0.2, 0.1, 0.05)
    ]
    assert costs == sorted(costs, reverse=True)
    assert len(set(costs)) == 4


def test_cost_falls_along_a_yield_ramp():
    ramp = DefectRampSpec(
        initial_defect_density_per_cm2=0.286, mature_defect_density_per_cm2=0.08, time_constant_years=0.75
    )
    spec = ChipCostSpec(node="smic-n+2", die_area_mm2=600.0, hbm_capacity_bytes=96e9, ramp=ramp)
    estimates = [estimate_chip_cost(spec, years_since_ramp_start=t) for t in (0.0, 0.5, 1.0, 2.0, 5.0)]
    yields = [e.die_yield_frac for e in estimates]
    costs = [e.cost_per_good_chip_usd for e in estimates]
    assert yields == sorted(yields)
    assert costs == sorted(costs, reverse=True)


def test_h100_like_estimate_is_near_the_published_bom():
    # Raymond James estimated NVIDIA's H100 SXM5 manufacturing cost at ~$3,320 (incl. HBM),
    # shared/reference/silicon_and_dc_costs.csv. Our bottom-up estimate from the TSMC N5-family
    # wafer price and D0, 814 mm^2, 80 GB HBM and CoWoS-S should land within 25% of it.
    spec = ChipCostSpec(node="tsmc-n5", die_area_mm2=814.0, hbm_capacity_bytes=80e9, packaging="cowos-s-class")
    assert estimate_chip_cost(spec).cost_per_good_chip_usd == pytest.approx(3320.0, rel=0.25)


def test_sensitivity_elasticities_match_cost_shares():
    spec = _simple(hbm_capacity_bytes=80e9, packaging="cowos-s-class")
    base = estimate_chip_cost(spec)
    rows = {row.input: row for row in chip_cost_sensitivity(spec, delta_frac=0.1)}
    # cost is linear in wafer price and HBM price: elasticity = that item's share of the cost
    assert rows["wafer_price_usd"].elasticity == pytest.approx(base.silicon_usd / base.cost_per_good_chip_usd)
    assert rows["hbm_usd_per_gb"].elasticity == pytest.approx(base.hbm_usd / base.cost_per_good_chip_usd)
    assert rows["defect_density_per_cm2"].elasticity > 0
    swings = [row.swing_usd for row in chip_cost_sensitivity(spec)]
    assert swings == sorted(swings, reverse=True)


def test_smic_d0_is_the_murphy_inverse_of_the_910c_yield():
    # nodes.yaml derives SMIC N+2's D0 from the 910C's 40% yield on a 665.61 mm^2 die
    node = load_node("smic-n+2")
    assert node.defect_density_per_cm2.basis == "derived"
    assert "665.61" in node.defect_density_per_cm2.note
    derived = defect_density_from_yield(0.40, 665.61, node.yield_model)
    assert node.defect_density_per_cm2.value == pytest.approx(derived, abs=0.001)
    assert node.wafer_price_usd.value == pytest.approx(10_000 * 1.45)


def test_every_data_figure_has_a_source():
    for name in node_names():
        node = load_node(name)
        for figure in (node.wafer_price_usd, node.defect_density_per_cm2):
            if figure is not None:
                assert figure.source.strip()
    for name in packaging_names():
        kind = load_packaging(name)
        assert kind.packaging_usd.source and kind.test_assembly_usd.source


def test_spec_validation():
    with pytest.raises(UnknownNameError, match="smic-n"):
        ChipCostSpec(node="smic-n2", die_area_mm2=100.0)
    with pytest.raises(UnknownNameError, match="cowos-s-class"):
        ChipCostSpec(node="tsmc-n7", die_area_mm2=100.0, packaging="cowos-s")
    ramp = DefectRampSpec(initial_defect_density_per_cm2=0.3, mature_defect_density_per_cm2=0.1, time_constant_years=1)
    with pytest.raises(ValidationError, match="not both"):
        ChipCostSpec(node="tsmc-n7", die_area_mm2=100.0, defect_density_per_cm2=0.1, ramp=ramp)
    with pytest.raises(ValidationError, match="no published D0"):
        ChipCostSpec(node="tsmc-n3", die_area_mm2=100.0)
    with pytest.raises(ValidationError, match="clustering_alpha"):
        ChipCostSpec(node="tsmc-n7", die_area_mm2=100.0, yield_model="negative-binomial")
    with pytest.raises(ValidationError):
        ChipCostSpec(node="tsmc-n7", die_area_mm2=-5.0)
