"""Shared kernel tables that beat their chip's roofline (calibrate/implausible.yaml) stay out of the fits."""

import pandas as pd
import pytest
import yaml

from tokenfab.calibrate.implausible import drop_implausible, implausible_mask, implausible_tables

pytestmark = pytest.mark.unit


def _rows() -> pd.DataFrame:
    return pd.DataFrame({"device": ["a100-sxm", "a100-sxm", "a100-sxm", "h100-sxm", "a100-sxm"],
                         "op": ["attention_decode", "attention_prefill", "attention_decode", "attention_decode", "gemm"],
                         "kv_dtype": ["bf16", "bf16", "fp8", "bf16", None], "time_s": [1e-4] * 5})


def test_the_a100_bf16_decode_table_is_excluded():
    assert {"device": "a100-sxm", "op": "attention_decode", "kv_dtype": "bf16"} in implausible_tables()


def test_only_rows_of_an_excluded_table_are_dropped():
    """Same chip, other op or KV format, or another chip's decode table: kept."""
    rows = _rows()
    assert implausible_mask(rows).tolist() == [True, False, False, False, False]
    assert drop_implausible(rows).index.tolist() == [1, 2, 3, 4]


def test_a_frame_without_the_key_columns_has_nothing_to_drop():
    rows = pd.DataFrame({"device": ["a100-sxm"], "op": ["all_reduce"], "time_s": [1e-5]})
    assert not implausible_mask(rows).any()


def test_excluded_rows_are_scored_in_their_own_group():
    from tokenfab.calibrate.validate import IMPLAUSIBLE_SUFFIX, predict_measurements

    rows = pd.DataFrame({"device": ["a100-sxm", "a100-sxm"], "op": ["attention_decode"] * 2, "dtype": ["bf16"] * 2,
                         "kv_dtype": ["bf16", "fp8"], "batch": [8, 8], "kv_len": [1024.0] * 2, "num_heads": [8, 8],
                         "num_kv_heads": [1, 1], "head_dim": [128, 128], "variant": [None, None], "time_s": [1e-5] * 2})
    assert predict_measurements(rows)["group"].tolist() == ["attention" + IMPLAUSIBLE_SUFFIX, "attention"]


def test_generic_pool_leaves_the_excluded_rows_out(monkeypatch):
    """fit_generic_profile pools nothing of an excluded table, whatever frame it is given."""
    import tokenfab.calibrate.profiles as P

    seen = []
    monkeypatch.setattr(P, "kernel_samples", lambda rows, chip, **kw: seen.append(rows) or {})
    monkeypatch.setattr(P, "collective_samples", lambda rows, chip: {})
    monkeypatch.setattr(P, "_assemble", lambda *a, **k: {})
    from tokenfab.hardware.catalog import load_chip

    P.fit_generic_profile(_rows(), [load_chip("a100-sxm"), load_chip("h100-sxm")], "test")
    pooled = pd.concat(seen)
    assert len(pooled) == 4 and not implausible_mask(pooled).any()


def test_shipped_a100_profile_has_no_decode_fit_and_resolves_to_generic():
    from tokenfab import api
    from tokenfab.cost.profile import PROFILE_DIR

    profile = yaml.safe_load((PROFILE_DIR / "a100-sxm.yaml").read_text())
    assert not profile.get("attention_decode")
    res = api.op("attention", hardware="a100-sxm", phase="decode", batch=64, q_len=1, kv_len=4096, heads=64,
                 kv_heads=8, head_dim=128, dtype="bf16", kv_dtype="bf16").to_dict()
    assert res["efficiency_source"] == "generic"
    assert res["time_s"] > 1.1 * res["roofline_s"]  # the generic decode efficiency (0.86) leaves the HBM peak unreached
