"""The evidence behind calibrate/implausible.yaml, checked on the shared data: the A100 decode-attention table streams
KV caches far larger than the A100's L2 faster than its HBM allows; the other chips' decode tables and the A100's other
kernel tables stay within their chip's peaks."""

from functools import lru_cache

import numpy as np
import pytest

from tokenfab.calibrate.measurements import load_shared_ops
from tokenfab.calibrate.profiles import kernel_samples
from tokenfab.hardware.catalog import load_chip

pytestmark = pytest.mark.calibration

CACHE_MULTIPLE = 4  # working sets at least this many times the chip's on-chip SRAM cannot be served from cache


@lru_cache(maxsize=1)
def _ops():
    return load_shared_ops()


@lru_cache(maxsize=None)
def _peak_fractions(chip_name: str) -> dict:
    """Per (table, kind): DRAM bytes / time / bandwidth and FLOPs / time / peak of the rows whose working set exceeds
    CACHE_MULTIPLE x the chip's SRAM (bytes and FLOPs as the fitter counts them)."""
    chip = load_chip(chip_name)
    ops = _ops()
    out = {}
    for key, s in kernel_samples(ops[ops.device == chip_name], chip, warm=False).items():
        big = s.dram_bytes > CACHE_MULTIPLE * chip.sram_bytes
        if big.any():
            out[key] = (s.dram_bytes[big] / s.time_s[big] / s.bandwidth[big], s.flops[big] / s.time_s[big] / s.peak[big])
    return out


def test_a100_decode_table_beats_the_a100_hbm():
    bw, _ = _peak_fractions("a100-sxm")[("attention_decode", "bf16")]
    assert (bw > 1.0).sum() >= 50 and bw.max() > 1.5


@pytest.mark.parametrize("chip", ["h100-sxm", "b200", "l40s"])
def test_other_chips_decode_tables_stay_below_their_hbm(chip):
    for (table, kind), (bw, _) in _peak_fractions(chip).items():
        if table == "attention_decode":
            assert bw.max() < 0.95, (chip, kind)


def test_a100_other_tables_stay_within_its_peaks():
    for (table, kind), (bw, fl) in _peak_fractions("a100-sxm").items():
        if table != "attention_decode":
            assert np.max(bw) < 1.0 and np.max(fl) < 1.0, (table, kind)
