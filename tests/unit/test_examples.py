"""The examples in examples/ run (with small inputs) and print what they promise."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_azure_trace_example_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "azure_conv_h100_vs_h20.py"), "--num-requests", "300"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "h100-sxm" in proc.stdout and "h20" in proc.stdout and "TTFT p99" in proc.stdout
