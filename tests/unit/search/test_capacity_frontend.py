"""The steady state behind an engine's serial front end (`EngineLimits.frontend_s`, fitted for TensorRT-LLM:
serving/engines/overheads.yaml): closed-loop clients divide between the front end's queue and the engine
(`closed_loop_state`), open-loop arrivals queue for it (`_open_loop_frontend`). Hand-computed values."""

from dataclasses import replace

import pytest

from tokenfab import api
from tokenfab.search.capacity import EngineLimits, _mva, _open_loop_frontend, closed_loop_state, estimate_steady_state

pytestmark = pytest.mark.unit


def test_mva_of_one_and_two_clients():
    # one client never queues: X = 1 / (Z + f). Two: the second finds the first in the front end with probability
    # Q1 = X1 f = f / (Z + f), so R2 = f (1 + Q1) and X2 = 2 / (Z + R2). Z = 0.1 s, f = 0.05 s: Q1 = 1/3,
    # R2 = 0.0667 s, X2 = 12 requests/s.
    assert _mva(1, 0.1, 0.05) == pytest.approx((1 / 0.15, 0.05))
    x, r = _mva(2, 0.1, 0.05)
    assert r == pytest.approx(0.05 * 4 / 3)
    assert x == pytest.approx(12.0)


def test_mva_saturates_at_the_front_end_rate():
    x, r = _mva(500, 0.1, 0.05)
    assert x == pytest.approx(1 / 0.05, rel=1e-3)  # one request per front-end time
    assert r == pytest.approx(500 / x - 0.1, rel=1e-6)  # the rest of the cycle is spent queueing there


def _sm():
    return api.deployment("llama-3.1-8b", "h100-sxm", None, 1).step_model


def test_without_a_front_end_the_clients_are_the_batch():
    sm, limits = _sm(), EngineLimits(max_num_seqs=256)
    assert closed_loop_state(sm, 32, 512, 128, limits) == estimate_steady_state(sm, 32, 512, 128, limits, 0.0)


def test_a_front_end_caps_the_request_rate_and_adds_its_time_to_ttft():
    sm, limits = _sm(), EngineLimits(max_num_seqs=256)
    engine_only = estimate_steady_state(sm, 64, 128, 64, limits, 0.0)
    slow = replace(limits, frontend_s=0.05)  # 20 requests/s at most, far below the engine's rate at 64
    s = closed_loop_state(sm, 64, 128, 64, slow)
    assert engine_only.requests_per_s > 40
    assert s.requests_per_s <= 20.0 + 1e-9 and s.requests_per_s == pytest.approx(20.0, rel=0.01)
    assert s.tokens_per_s == pytest.approx(s.requests_per_s * 64)
    assert s.batch < 64  # most clients wait in the front end, so the engine runs a smaller batch, faster
    assert s.tpot_s < engine_only.tpot_s
    assert s.ttft_s > 64 / 20.0 - s.batch / s.requests_per_s  # the wait there: the cycle less the time in the engine


def test_open_loop_front_end_wait_is_md1_and_unbounded_at_saturation():
    sm = _sm()
    s = estimate_steady_state(sm, 8, 128, 64, EngineLimits(), 0.5)
    f = 0.5 / s.requests_per_s  # rho = 0.5: wait = rho f / (2 (1 - rho)) = f / 2
    assert _open_loop_frontend(s, f).ttft_s == pytest.approx(s.ttft_s + f + f / 2)
    assert _open_loop_frontend(s, 1.0 / s.requests_per_s).ttft_s == float("inf")
    assert _open_loop_frontend(s, 0.0) == s


def test_streamed_tokens_are_demand_on_the_same_server():
    # One server process for the front end and the token stream (`serving.delivery`): a request's demand on it is
    # f + O x b, so 2 ms plus 64 tokens x 0.5 ms is the 34 ms of a front end alone, and caps the rate at 1 / 34 ms.
    sm, limits = _sm(), EngineLimits(max_num_seqs=256)
    streamed = closed_loop_state(sm, 64, 128, 64, replace(limits, frontend_s=0.002, delivery_s_per_token=0.0005))
    front_only = closed_loop_state(sm, 64, 128, 64, replace(limits, frontend_s=0.034))
    assert replace(limits, frontend_s=0.002, delivery_s_per_token=0.0005).server_s(64) == pytest.approx(0.034)
    assert streamed.requests_per_s == pytest.approx(front_only.requests_per_s, rel=1e-9)
    assert streamed.requests_per_s == pytest.approx(1 / 0.034, rel=0.01)
