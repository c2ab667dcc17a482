"""Output a person reads right (issue 8.4, the CLI's part)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import run_cli as cli

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]




def words(text: str) -> str:
    """Table text with rich's line wrapping undone."""
    return " ".join(text.split())


def test_highs_banner_stays_off_stdout(tmp_path):
    """HiGHS writes from C to file descriptor 1: only a real process shows whether stdout stays pure JSON."""
    import yaml

    plan = yaml.safe_load((ROOT / "examples" / "fleet_2026_2028.yaml").read_text())
    plan["limits"] = {}  # the banner is under test, not the example's power headroom
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    proc = subprocess.run([sys.executable, "-m", "tokenfab.cli.main", "plan", str(path), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Running HiGHS" not in proc.stdout and json.loads(proc.stdout)["status"] == "optimal"
    assert "Running HiGHS" in proc.stderr  # the banner is kept, on stderr


def test_hw_show_in_human_units(capsys):
    code, out, _ = cli(["hw", "show", "h100-sxm"], capsys)
    assert code == 0
    assert "3.35 TB/s" in out and "989.4 TFLOP/s" in out and "80.0 GB" in out and "700 W" in out
    code, out, _ = cli(["hw", "show", "h100-sxm", "--json"], capsys)
    assert json.loads(out)["memory"]["bandwidth_bytes_per_s"]["value"] == pytest.approx(3.35e12)


def test_goodput_is_n_a_without_an_slo_and_the_pd_header_counts_pools(capsys):
    base = ["simulate", "--rate", "4", "--num-requests", "6", "--input-len", "64", "--output-len", "4"]
    code, out, _ = cli(base, capsys)
    assert code == 0 and "n/a (no --slo-ttft-ms / --slo-tpot-ms given)" in words(out) and "tp1, 1 replica)" in words(out)
    code, out, _ = cli([*base, "--slo-ttft-ms", "500"], capsys)
    assert code == 0 and "within TTFT <= 500 ms" in words(out)
    code, out, _ = cli([*base, "--prefill-replicas", "2", "--decode-replicas", "3"], capsys)
    assert code == 0 and "P/D: 2 prefill x tp1 + 3 decode x tp1" in words(out)
    code, out, _ = cli([*base, "--json"], capsys)
    d = json.loads(out)
    assert d["config"]["slo_ttft_ms"] is None and d["goodput_requests_per_s"] == pytest.approx(d["requests_per_s"])
