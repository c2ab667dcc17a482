"""Regression against measured data in ../shared/calibration: pinned anchor points only.

Broad accuracy is tracked by bench/accuracy.py; these are a few well-understood rows whose
error must stay small, and a check that the shipped profiles are what the fitter produces
from the data (nobody edited a fitted number by hand).
"""

import pandas as pd
import pytest
import yaml

from tokenfab import api
from tokenfab.calibrate.measurements import load_shared_ops, shared_calibration_dir
from tokenfab.calibrate.profiles import fit_chip_profile
from tokenfab.cost.profile import PROFILE_DIR
from tokenfab.hardware.catalog import load_chip

pytestmark = pytest.mark.calibration


@pytest.fixture(scope="module")
def shared_ops() -> pd.DataFrame:
    return load_shared_ops()


def _measured(frame, **eq):
    rows = frame
    for k, v in eq.items():
        rows = rows[rows[k] == v]
    assert len(rows) == 1, eq
    return float(rows["time_s"].iloc[0])


@pytest.mark.parametrize("device, dtype, m, n, k, tol", [
    ("h100-sxm", "bf16", 8192, 8192, 8192, 0.10),  # compute bound
    ("h100-sxm", "bf16", 1, 16384, 16384, 0.10),  # decode GEMV, memory bound
    ("b200", "fp8", 4096, 4096, 4096, 0.15),
    ("a100-sxm", "bf16", 16, 8192, 8192, 0.15),
])
def test_gemm_anchor_points(shared_ops, device, dtype, m, n, k, tol):
    measured = _measured(shared_ops, device=device, op="gemm", dtype=dtype, weight_dtype=dtype, variant="",
                         m=float(m), n=float(n), k=float(k))
    predicted = api.op("gemm", device, m=m, n=n, k=k, dtype=dtype, warm_cache=True).cost.time_s
    assert predicted == pytest.approx(measured, rel=tol)


def test_allreduce_anchor_point(shared_ops):
    rows = shared_ops[(shared_ops.device == "h100-sxm") & (shared_ops.op == "all_reduce") & (shared_ops.num_devices == 8)
                      & (shared_ops.message_bytes == 67108864) & (shared_ops.dtype == "half")]
    predicted = api.op("allreduce", "h100-sxm", devices=8, bytes=67108864).cost.time_s
    assert predicted == pytest.approx(float(rows.time_s.iloc[0]), rel=0.35)


def test_lmdeploy_llama2_7b_tpot_anchor():
    """LMDeploy (TurboMind) on A100-80G, fp16, batch 1, 128 in / 128 out: median per-token latency 10 ms."""
    rows = pd.read_csv(shared_calibration_dir() / "e2e_published.csv")
    row = rows[rows.case_id == "lmdeploy-a100-Llama-2-7B-b1-tp1-128-128-tok50"].iloc[0]
    r = api.predict(model="llama-2-7b", hardware="a100-sxm", dtype="fp16", batch=1, input_len=128, output_len=128)
    assert r.tpot_s * 1e3 == pytest.approx(row.value, rel=0.15)


def test_shipped_profile_is_what_the_fitter_produces(shared_ops):
    shipped = yaml.safe_load((PROFILE_DIR / "h100-sxm.yaml").read_text())
    refit = fit_chip_profile(shared_ops, load_chip("h100-sxm"), shipped["provenance"])
    for table in ("gemm", "attention_prefill", "attention_decode"):
        for kind, params in shipped[table].items():
            for key in ("compute_eff", "memory_eff", "launch_s"):
                assert refit[table][kind][key] == pytest.approx(params[key], rel=0.02), f"{table}.{kind}.{key}"
