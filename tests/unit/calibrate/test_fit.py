"""Fitting recovers known parameters from synthetic measurements (known curve plus noise)."""

import numpy as np
import pytest

from tokenfab.calibrate.fit import CollectiveSamples, KernelSamples, collective_time_array, fit_collective, fit_kernel, predict_samples
from tokenfab.cost.kernel import KernelParams

pytestmark = pytest.mark.unit


def _gemm_samples(theta, noise, rng):
    m = np.repeat(2.0 ** np.arange(0, 15), 16)
    n = np.tile(np.repeat([1024.0, 4096.0, 8192.0, 16384.0], 4), 15)
    k = np.tile([1024.0, 2048.0, 4096.0, 8192.0], 60)
    flops = 2 * m * n * k
    dram = (m * k + k * n + m * n) * 2.0
    s = KernelSamples(flops, dram, np.full_like(m, 989e12), np.full_like(m, 3.35e12), np.minimum(m, 128) * n / 128**2,
                      np.full_like(m, 132.0), np.zeros_like(m), np.ones_like(m))
    t = predict_samples(theta, s) * np.exp(rng.normal(0, noise, len(m)))
    return KernelSamples(*(getattr(s, f) for f in ("flops", "dram_bytes", "peak", "bandwidth", "work_units",
                                                    "compute_units", "cache_bytes")), t)


def test_fit_recovers_known_gemm_curve():
    rng = np.random.default_rng(7)
    truth = KernelParams(4e-6, 0.8, 0.85, 3.0, 0.3)
    params, q = fit_kernel(_gemm_samples(truth.as_vector(), 0.03, rng))
    assert params.launch_s == pytest.approx(4e-6, rel=0.1)
    assert params.compute_eff == pytest.approx(0.8, rel=0.05)
    assert params.memory_eff == pytest.approx(0.85, rel=0.05)
    assert q.mape < 0.05


def test_fit_is_robust_to_outliers():
    rng = np.random.default_rng(3)
    truth = KernelParams(4e-6, 0.7, 0.9, 4.0, 0.2)
    s = _gemm_samples(truth.as_vector(), 0.02, rng)
    t = s.time_s.copy()
    t[rng.choice(len(t), 12, replace=False)] *= 3.0  # 5% of points hit by a slow kernel or throttling
    s = KernelSamples(*(getattr(s, f) for f in ("flops", "dram_bytes", "peak", "bandwidth", "work_units",
                                                 "compute_units", "cache_bytes")), t)
    params, _ = fit_kernel(s)
    assert params.compute_eff == pytest.approx(0.7, rel=0.08)
    assert params.memory_eff == pytest.approx(0.9, rel=0.08)


def test_fit_recovers_collective_protocols():
    rng = np.random.default_rng(1)
    sizes = 2.0 ** np.arange(9, 30)
    n = np.full_like(sizes, 8.0)
    base = CollectiveSamples("all_reduce", n, sizes, np.full_like(sizes, 450e9), np.ones_like(sizes))
    truth = np.array([6e-6, 0.3, 20e-6, 0.8, 3e-7])
    t = collective_time_array(truth, base) * np.exp(rng.normal(0, 0.02, len(sizes)))
    params, q = fit_collective(CollectiveSamples("all_reduce", n, sizes, base.link_bw, t))
    assert params.bus_eff == pytest.approx(0.8, rel=0.05)
    assert q.mape < 0.04
