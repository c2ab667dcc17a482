"""Leave-one-chip-out (`calibrate.unseen`): nothing of the held chip's measurements, only its spec."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from tokenfab.calibrate.measurements import validate
from tokenfab.calibrate.unseen import fit_without, unseen_chip_cost
from tokenfab.calibrate.validate import predict_measurements
from tokenfab.cost.profile import GENERIC, KILO_CYCLES
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.catalog import load_chip

pytestmark = pytest.mark.unit
POOL = ["a100-sxm", "h100-sxm", "l40s", "b200"]


def _rows(device: str, gemm_dtype: str = "bf16") -> pd.DataFrame:
    """GEMM and bf16 fused-MoE rows of one chip, timed by its shipped profile (any plausible times will do)."""
    gemm = [{"device": device, "op": "gemm", "dtype": gemm_dtype, "weight_dtype": gemm_dtype, "m": m, "n": n, "k": 4096}
            for m, n in itertools.product((1, 16, 128, 1024, 8192), (1024, 8192))]
    moe = [{"device": device, "op": "moe", "dtype": "bf16", "num_tokens": t, "hidden": h, "intermediate": 1536, "topk": 8,
            "num_experts": 128, "moe_tp": 1, "ep": ep, "gated": True, "distribution": "balanced"}
           for t, h, ep in itertools.product((1, 16, 256, 4096), (2048, 4096), (8,))]
    frame = validate(pd.DataFrame(gemm + moe).assign(time_s=1.0))
    return frame.assign(time_s=predict_measurements(frame)["predicted_s"].to_numpy())


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    # the held chip (b200) measured FP4 GEMMs nobody else did: they must not reach its unseen prediction
    return pd.concat([_rows("a100-sxm"), _rows("h100-sxm"), _rows("l40s"), _rows("b200"), _rows("b200", "fp4")],
                     ignore_index=True)


@pytest.fixture(scope="module")
def resolved(frame):
    return unseen_chip_cost(frame, "b200", POOL).resolved


def test_the_held_chips_rows_change_nothing(frame, resolved):
    held = frame["device"] == "b200"
    slower = frame.assign(time_s=np.where(held, frame["time_s"] * 10.0, frame["time_s"]))
    a = resolved
    b = unseen_chip_cost(slower, "b200", POOL).resolved
    c = unseen_chip_cost(frame[~held], "b200", POOL).resolved
    for r in (b, c):
        assert r.moe("w4a8") == a.moe("w4a8") and r.gemm("bf16") == a.gemm("bf16")


def test_only_the_held_chips_spec_is_used(resolved):
    chip = load_chip("b200")
    assert resolved.provenance == GENERIC and resolved.clock_hz == chip.clock
    assert resolved.compute_units == chip.num_compute_units.value
    # a kind only the held chip measured falls back to the pooled 16-bit curve, not to any profile that saw it
    assert resolved.gemm("fp4") == resolved.gemm("bf16")
    assert [source for _, source in resolved.layers()] == [GENERIC]
    # the pooled MoE chain's thousands of cycles, counted at the held chip's own clock
    pooled = resolved.profile  # the pooled fit itself
    params, source = resolved.moe("w4a8")  # a kind the pool lacks: its bf16 curve
    assert source == GENERIC
    assert params.launch_s == pytest.approx(pooled.moe_launch_kilocycles["bf16"] * KILO_CYCLES / chip.clock)


def test_a_pool_of_the_held_chip_alone_is_refused(frame):
    with pytest.raises(InvalidInputError, match="at least one other chip"):
        fit_without(frame, "b200", ["b200"])
