"""The time series agrees with the request log: busy time never exceeds wall time, and Little's law holds."""

from __future__ import annotations

import numpy as np
import pytest

from tokenfab import api


@pytest.mark.unit
@pytest.mark.parametrize("kwargs", [dict(rate=6.0), dict(rate=14.0), dict(concurrency=16)])
def test_busy_time_never_exceeds_wall_time(kwargs):
    r = api.simulate(model="qwen3-1.7b", hardware="l40s", num_requests=600, input_len=512, output_len=128,
                     timeseries_interval_s=0.5, seed=3, **kwargs)
    ts = r.timeseries_frame()
    assert (ts.busy_s <= 0.5 + 1e-9).all()
    assert (ts.busy_s >= -1e-9).all()
    assert ts.busy_s.sum() <= r.summary["simulated_s"] + 1e-6


@pytest.mark.unit
def test_littles_law_closed_loop():
    """C clients keep C requests in the system: L = C = lambda x W from the request log, within 2%. The time
    series (an independent account, kept by the replica) sees at most C running sequences and, since a client's
    next request reaches the engine only at its next iteration, slightly fewer on average."""
    c = 12
    r = api.simulate(model="qwen3-1.7b", hardware="l40s", concurrency=c, num_requests=800, input_len=256,
                     output_len=64, seed=1)
    s = r.summary
    f = r.requests_frame()
    lam = s["requests_per_s"]
    w = float(np.mean(f.e2e_s))
    assert lam * w == pytest.approx(c, rel=0.02)
    ts = r.timeseries_frame()
    mean_batch = float((ts.mean_batch * ts.busy_s).sum() / ts.busy_s.sum())
    assert c * 0.95 <= mean_batch <= c + 1e-9
