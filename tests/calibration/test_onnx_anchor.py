"""Pinned anchor for ONNX graphs: MLPerf v4.1 ResNet-50 offline on 8 x H100-SXM (INT8, TensorRT).

Broad accuracy (every chip, BERT, latency scenarios) is tracked by bench/accuracy_onnx.py; this
anchor only guards the best-understood row class against regressions.
"""

import sys
from pathlib import Path

import pytest

from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.errors import DataFileError

pytestmark = pytest.mark.calibration


def test_resnet50_offline_on_h100_sxm():
    try:
        directory = shared_calibration_dir()
    except DataFileError as exc:  # no shared data in this checkout
        pytest.skip(f"shared calibration data unavailable: {exc}")
    if not (directory / "mlperf.csv").exists():
        pytest.skip("shared/calibration/mlperf.csv is absent")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from accuracy_onnx import run_onnx_group

    frame, _ = run_onnx_group(directory)
    rows = frame[(frame["device"] == "h100-sxm") & (frame["group"] == "onnx resnet-50 offline")]
    assert len(rows) >= 5
    assert rows["error_frac"].abs().mean() < 0.35  # measured 19% MAPE when the anchor was pinned
