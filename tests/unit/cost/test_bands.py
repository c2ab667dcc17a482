"""Error bands: conformal quantiles, composite sums and the F_lo/F_hi helper, against hand-computed values."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenfab.calibrate.band_coverage import normalised_scores
from tokenfab.calibrate.fit_bands import quantile_table
from tokenfab.cost.bands import (
    Band, BandTable, ResidualQuantiles, add_bands, check_level, composite_band, load_band_table, op_band, op_family,
)
from tokenfab.errors import InvalidInputError

pytestmark = pytest.mark.unit


def _rq(residuals) -> ResidualQuantiles:
    t = quantile_table(np.asarray(residuals))
    return ResidualQuantiles(tuple(t["probabilities"]), tuple(t["values"]), t["num_rows"])


def _table(ops: dict, e2e: dict | None = None) -> BandTable:
    return BandTable({k: _rq(v) for k, v in ops.items()}, {k: _rq(v) for k, v in (e2e or {}).items()}, {})


def test_conformal_quantiles_of_a_uniform_grid():
    # 1001 residuals -0.5 .. 0.5: the 5% / 95% quantiles are -0.45 / 0.45; the (n+1)/n correction
    # moves each tail by 1/n of its width: tail (0.05 * 1002 - 1) / 1001 = 0.04905
    q = _rq(np.linspace(-0.5, 0.5, 1001))
    lo, hi = q.conformal(0.9)
    assert lo == pytest.approx(-0.5 + 0.04905, abs=2e-4)
    assert hi == pytest.approx(0.5 - 0.04905, abs=2e-4)


def test_conformal_band_always_contains_the_prediction():
    q = _rq(np.linspace(0.1, 0.3, 101))  # a model that is always 10-35% too slow
    lo, hi = q.conformal(0.9)
    assert lo == 0.0 and hi > 0.1


def test_op_band_maps_residuals_to_measured_over_predicted():
    # r = log(pred / meas) in [-0.2, 0.4] -> meas / pred in [exp(-0.4), exp(0.2)]
    t = _table({("gemm", "fitted"): np.linspace(-0.2, 0.4, 2001)})
    b = op_band("gemm", "fitted", 0.99, t)
    assert b.lo_factor == pytest.approx(math.exp(-0.4 + 0.003), rel=2e-3)
    assert b.hi_factor == pytest.approx(math.exp(0.2 - 0.003), rel=2e-3)


def test_missing_family_falls_back_to_pooled_then_generic():
    t = _table({("all", "fitted"): [-0.1, 0.1] * 50, ("gemm", "generic"): [-0.5, 0.5] * 50})
    assert op_band("moe", "fitted", 0.9, t) == op_band("all", "fitted", 0.9, t)
    assert op_band("gemm", "mixed", 0.9, t) == op_band("gemm", "generic", 0.9, t)


def test_composite_is_the_comonotone_sum_of_op_bounds():
    t = _table({("gemm", "fitted"): np.linspace(-0.1, 0.1, 1001), ("collectives", "fitted"): np.linspace(-0.5, 0.5, 1001)})
    g, c = op_band("gemm", "fitted", 0.9, t), op_band("collectives", "fitted", 0.9, t)
    b = composite_band([(3.0, "gemm", "fitted"), (1.0, "collectives", "fitted")], 0.9, table=t)
    assert b.lo_factor == pytest.approx((3 * g.lo_factor + c.lo_factor) / 4)
    assert b.hi_factor == pytest.approx((3 * g.hi_factor + c.hi_factor) / 4)


def test_end_to_end_scale_raises_the_reference_band_to_the_score_quantile():
    t = _table({("gemm", "fitted"): np.linspace(-0.2, 0.2, 1001)}, {"ttft": np.full(100, 2.0)})
    raw = op_band("gemm", "fitted", 0.9, t)
    b = composite_band([(1.0, "gemm", "fitted")], 0.8, "ttft", t)
    assert b.lo_factor == pytest.approx(raw.lo_factor ** 2.0)
    assert b.hi_factor == pytest.approx(raw.hi_factor ** 2.0)


def test_normalised_score_is_one_on_the_band_edge():
    p, lo, hi = np.array([1.0, 1.0, 1.0]), np.array([0.5, 0.5, 0.5]), np.array([2.0, 2.0, 2.0])
    s = normalised_scores(p, lo, hi, np.array([2.0, 0.5, 4.0]))
    assert s == pytest.approx([1.0, 1.0, 2.0])


def test_add_bands_times_rates_and_nested_percentiles():
    band = Band(0.8, 1.25, 0.9)
    d = {"time_s": 2.0, "tokens_per_s": 100.0, "ttft_s": {"p50": 1.0, "p99": 4.0}, "fits": True, "devices": 8,
         "sim_wall_s": 3.0, "memory_bytes": {"weights": 1e9}}
    add_bands(d, band)
    assert (d["time_s_lo"], d["time_s_hi"]) == pytest.approx((1.6, 2.5))
    assert (d["tokens_per_s_lo"], d["tokens_per_s_hi"]) == pytest.approx((80.0, 125.0))
    assert (d["ttft_s"]["p99_lo"], d["ttft_s"]["p99_hi"]) == pytest.approx((3.2, 5.0))
    for untouched in ("fits_lo", "devices_lo", "sim_wall_s_lo"):
        assert untouched not in d
    assert "weights_lo" not in d["memory_bytes"]


def test_op_family_of_breakdown_names():
    assert op_family("attn.core", "prefill") == "attention_prefill"
    assert op_family("attn.core", "decode") == "attention_decode"
    assert op_family("attn.qkv_proj") == "gemm"
    assert op_family("tp.allreduce") == "collectives"
    assert op_family("moe.dispatch") == "collectives"
    assert op_family("moe.experts_up") == "moe"
    assert op_family("attn.rotary") == "elementwise"
    assert op_family("lm_head_gather") == "collectives"
    assert op_family("moe.router") == "gemm"


@pytest.mark.parametrize("level", [0.3, 1.0, 1.5, float("nan")])
def test_bad_level_is_a_user_error(level):
    with pytest.raises(InvalidInputError, match="band-level"):
        check_level(level)


def test_band_factors_must_bracket_one():
    with pytest.raises(ValueError):
        Band(1.1, 1.2, 0.9)


@pytest.mark.property
@given(st.sampled_from(["gemm", "attention_prefill", "attention_decode", "collectives", "moe", "elementwise"]),
       st.sampled_from(["fitted", "inherited", "generic"]), st.floats(0.5, 0.98), st.floats(0.001, 0.01))
def test_shipped_bands_bracket_and_grow_with_level(family, source, level, step):
    t = load_band_table()
    a, b = op_band(family, source, level, t), op_band(family, source, level + step, t)
    assert a.lo_factor <= 1.0 <= a.hi_factor
    assert b.lo_factor <= a.lo_factor + 1e-12 and b.hi_factor >= a.hi_factor - 1e-12


@pytest.mark.parametrize("family", ["gemm", "attention_prefill", "attention_decode", "collectives"])
def test_shipped_generic_and_inherited_bands_are_wider_than_fitted(family):
    t = load_band_table()

    def width(source):
        b = op_band(family, source, 0.9, t)
        return b.hi_factor / b.lo_factor

    assert width("generic") > width("fitted")
    assert width("inherited") > width("fitted")


def test_generator_output_round_trips(tmp_path):
    import pandas as pd

    from tokenfab.calibrate.fit_bands import write_band_data

    rng = np.random.default_rng(0)
    rows = []
    for source, sd in (("fitted", 0.1), ("generic", 0.4)):
        for chip in ("a", "b", "c"):
            r = rng.normal(0.0, sd, 300)
            rows.append(pd.DataFrame({"device": chip, "op": "gemm", "family": "gemm", "source": source, "unit": chip,
                                      "residual": r, "row_source": ""}))
    path = write_band_data(pd.concat(rows, ignore_index=True), tmp_path / "bands.yaml")
    t = load_band_table(str(path))
    assert t.provenance["rows"]["fitted:a"] == 300
    fitted, generic = op_band("gemm", "fitted", 0.9, t), op_band("gemm", "generic", 0.9, t)
    # normal residuals, sd 0.1: the 95% quantile is ~0.164, so hi ~ exp(0.164)
    assert fitted.hi_factor == pytest.approx(math.exp(0.1645), rel=0.03)
    assert generic.hi_factor > fitted.hi_factor
    assert op_band("attention_decode", "fitted", 0.9, t) == op_band("all", "fitted", 0.9, t)  # pooled fallback
