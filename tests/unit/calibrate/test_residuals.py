"""Residual frames for error bands: deterministic split, honest efficiency sources, held-out refits."""

import numpy as np
import pandas as pd
import pytest

from tokenfab.calibrate.residuals import COLUMNS, mape, residual_frame, shape_split
from tokenfab.errors import DataFileError


def _gemm_rows(n: int, device: str = "h100-sxm") -> pd.DataFrame:
    return pd.DataFrame({"device": device, "op": "gemm", "dtype": "bf16", "weight_dtype": "bf16", "variant": "",
                         "m": np.arange(1, n + 1) * 16.0, "n": 4096.0, "k": 4096.0, "time_s": 1e-4})


@pytest.mark.unit
def test_split_is_deterministic_by_shape_and_about_one_in_five():
    rows = _gemm_rows(2000)
    a, b = shape_split(rows), shape_split(rows.iloc[::-1].reset_index(drop=True))[::-1]
    assert (a == b).all()  # order does not matter
    assert 0.15 < (a == "test").mean() < 0.25
    repeat = pd.concat([rows.iloc[:50], rows.iloc[:50]], ignore_index=True)
    s = shape_split(repeat)
    assert (s[:50] == s[50:]).all()  # repeats of one shape stay on one side
    rows2 = rows.assign(time_s=2e-4)
    assert (shape_split(rows2) == a).all()  # the measured value does not choose the side


@pytest.mark.unit
def test_mape():
    assert mape(pd.Series([1.0, 2.0]), pd.Series([1.1, 1.0])) == pytest.approx(0.3)
    assert mape(pd.Series([1.0, 2.0]), pd.Series([np.nan, 2.2])) == pytest.approx(0.1)


@pytest.mark.calibration
def test_h20_residuals_have_fitted_inherited_and_holdout_columns():
    from tokenfab.calibrate.measurements import load_vendor_ops

    try:
        frame = load_vendor_ops()
    except (DataFileError, FileNotFoundError) as exc:
        pytest.skip(f"shared/calibration/vendors not available ({exc})")
    res = residual_frame(frame, devices=["h20"])
    assert list(res.columns) == COLUMNS and len(res) == (frame["device"] == "h20").sum()
    assert set(res["efficiency_source"]) == {"fitted"}
    assert set(res["unseen_source"]) == {"inherited"}  # H20 without its own rows: H100's curves
    test = res[res["split"] == "test"]
    assert test["holdout_predicted_s"].notna().all() and res.loc[res["split"] == "train", "holdout_predicted_s"].isna().all()
    # fitting on H20's own train rows beats inheriting H100's curves on the held-out shapes
    assert mape(test["measured_s"], test["holdout_predicted_s"]) < mape(test["measured_s"], test["unseen_predicted_s"])
