"""The warm-cache ramp of the shared kernel formula (`cost.kernel`, `cache_ramp_frac`), against hand-computed times."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tokenfab.calibrate.fit import KernelSamples, fit_kernel, predict_samples
from tokenfab.cost.kernel import KernelParams, kernel_time_array, kernel_time_s

pytestmark = pytest.mark.unit

# memory-only kernel: no launch, no FLOPs, memory efficiency 1, cache 4x DRAM bandwidth for bytes within 100 MB
STEP = KernelParams(0.0, 1.0, 1.0, 20.0, 0.0, cache_bw_factor=4.0, cache_capacity_frac=1.0)
RAMP = dataclasses.replace(STEP, cache_ramp_frac=0.2)
BW = 1e12
CACHE = 100e6


def _t(params: KernelParams, dram_bytes: float) -> float:
    return kernel_time_s(0.0, dram_bytes, 1e15, BW, params, 1.0, 100.0, cache_bytes=CACHE)[0]


def test_ramp_zero_is_the_step():
    assert _t(STEP, 99e6) == pytest.approx(99e6 / BW / 4.0)
    assert _t(STEP, 101e6) == pytest.approx(101e6 / BW)


def test_ramp_hits_the_cache_for_the_linear_fraction_beyond_the_capacity():
    # x = bytes / capacity; hit fraction h = clip((1 + 0.2 - x) / 0.2, 0, 1); time = bytes / BW x (h / 4 + 1 - h)
    assert _t(RAMP, 100e6) == pytest.approx(100e6 / BW / 4.0)  # x = 1: every byte hits, as under the step
    assert _t(RAMP, 105e6) == pytest.approx(105e6 / BW * (0.75 / 4.0 + 0.25))  # x = 1.05: three quarters
    assert _t(RAMP, 110e6) == pytest.approx(110e6 / BW * (0.5 / 4.0 + 0.5))  # x = 1.1: half of them
    assert _t(RAMP, 120e6) == pytest.approx(120e6 / BW)  # x = 1.2: none
    # a cold kernel (no cache bytes) never ramps
    assert kernel_time_s(0.0, 100e6, 1e15, BW, RAMP, 1.0, 100.0)[0] == pytest.approx(100e6 / BW)


def test_vectorised_form_matches_the_scalar_one_with_and_without_a_ramp():
    dram = np.array([50e6, 90e6, 100e6, 105e6, 113e6, 130e6])
    for params in (STEP, RAMP):
        fast = kernel_time_array(np.zeros(6), dram, 1e15, BW, params.as_vector(), np.ones(6), 100.0, np.full(6, CACHE))
        assert np.allclose(fast, [_t(params, b) for b in dram], rtol=1e-12)
    # a 7-entry vector (no ramp) is the step
    seven = kernel_time_array(np.zeros(6), dram, 1e15, BW, STEP.as_vector()[:7], np.ones(6), 100.0, np.full(6, CACHE))
    assert np.allclose(seven, [_t(STEP, b) for b in dram], rtol=1e-12)


def test_ramp_out_of_range_is_refused():
    with pytest.raises(Exception, match="cache"):
        dataclasses.replace(STEP, cache_ramp_frac=-0.1)


def test_fit_recovers_a_ramp_only_when_asked():
    rng = np.random.default_rng(0)
    n = 120
    dram = np.geomspace(5e6, 1e9, n)
    flops = dram * rng.uniform(1.0, 400.0, n)
    truth = KernelParams(8e-6, 0.7, 0.85, 2.0, 0.0, cache_bw_factor=3.0, cache_capacity_frac=1.0, cache_ramp_frac=0.25)
    s = KernelSamples(flops, dram, np.full(n, 1e15), np.full(n, BW), np.full(n, 1e4), np.full(n, 100.0),
                      np.full(n, CACHE), np.ones(n))
    s = dataclasses.replace(s, time_s=predict_samples(truth.as_vector(), s))
    ramped, q = fit_kernel(s, fit_ramp=True)
    assert ramped.cache_ramp_frac == pytest.approx(0.25, abs=0.02) and q.mape < 0.01
    stepped, q_step = fit_kernel(s)
    assert stepped.cache_ramp_frac == 0.0 and q_step.mape > q.mape
