"""The examples in examples/ run (with small inputs) and print what they promise."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_azure_trace_example_runs(shared_traces):
    """The example finds the trace through TOKENFAB_SHARED_DIR (the repository's parent may have no shared/)."""
    env = {**os.environ, "TOKENFAB_SHARED_DIR": str(shared_traces.parent)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "azure_conv_h100_vs_h20.py"), "--num-requests", "300"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "h100-sxm" in proc.stdout and "h20" in proc.stdout and "TTFT p99" in proc.stdout


def test_example_without_its_trace_says_so_in_one_line(tmp_path):
    env = {**os.environ, "TOKENFAB_SHARED_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "azure_conv_h100_vs_h20.py"), "--num-requests", "10"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


def test_seed_study_example_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "seed_study.py"), "--models", "llama-3.1-8b",
                           "--chips", "h100-sxm,npu-template,ascend-910b", "--rate", "2", "--top", "1",
                           "--num-requests", "200"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith("| llama-3.1-8b")]
    assert len(lines) == 3
    assert "(cost)" in lines[1]  # the NPU is costed by the silicon model, and says so
    assert lines[2].split("|")[6].strip() == "-"  # no sourced 910B price: left empty
