"""TCO per chip and cost per million tokens, checked by hand."""

import pytest

from tokenfab.fleet import TcoSpec, datacenter_defaults, estimate_tco
from tokenfab.units import SECONDS_PER_YEAR

pytestmark = pytest.mark.unit


def _spec(**kwargs):
    base = dict(
        chip_price=10_000.0,
        server_share=4_000.0,
        network_frac_of_capex=0.2,
        avg_power_w=500.0,
        server_power_ratio=1.8,
        pue=1.3,
        electricity_price_per_kwh=0.1,
        colocation_per_kw_month=150.0,
        depreciation_years=5.0,
        tokens_per_s=1000.0,
    )
    return TcoSpec(**{**base, **kwargs})


def test_tco_by_hand():
    tco = estimate_tco(_spec())
    assert tco.capex == pytest.approx(14_000 / 0.8)  # network is 20% of the total
    assert tco.network_share == pytest.approx(3_500.0)
    hours = SECONDS_PER_YEAR / 3600.0  # 8766
    assert tco.energy_per_year == pytest.approx(0.5 * 1.8 * 1.3 * hours * 0.1)  # kW x h x price
    assert tco.facility_per_year == pytest.approx(0.9 * 150.0 * 12)  # 0.9 kW IT x 150 /kW-month
    assert tco.depreciation_per_year == pytest.approx(17_500 / 5)
    total = 3_500 + 0.5 * 1.8 * 1.3 * hours * 0.1 + 1_620
    assert tco.total_per_year == pytest.approx(total)
    assert tco.cost_per_million_tokens == pytest.approx(total / (1000.0 * SECONDS_PER_YEAR) * 1e6)
    assert tco.facility_power_w == pytest.approx(500 * 1.8 * 1.3)


def test_floor_rent_adds_to_the_yearly_cost():
    plain = estimate_tco(_spec())
    rented = estimate_tco(_spec(floor_m2_per_chip=0.08, floor_cost_per_m2_year=500.0))
    assert rented.floor_per_year == pytest.approx(40.0)
    assert rented.total_per_year == pytest.approx(plain.total_per_year + 40.0)


def test_utilisation_raises_cost_per_token():
    full = estimate_tco(_spec()).cost_per_million_tokens
    half = estimate_tco(_spec(utilization_frac=0.5)).cost_per_million_tokens
    assert half == pytest.approx(2 * full)


def test_a_chip_that_serves_nothing_has_no_cost_per_token():
    assert estimate_tco(_spec(tokens_per_s=0.0)).cost_per_million_tokens is None


def test_default_figures_have_sources():
    defaults = datacenter_defaults()
    for name in type(defaults).model_fields:
        if name != "currency":
            assert getattr(defaults, name).source.strip(), name
    assert defaults.server_share_per_chip.value == pytest.approx(32_010 / 8)
