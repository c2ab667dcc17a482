"""The token-delivery stage (`serving.delivery`): one serial server that streams every output token to its client,
shared with the front end. Hand-computed timings on a stub step model, the run's closed form against the step-by-step
FIFO recursion, and Little's law when the server saturates."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_simulator import FixedTimer  # the simulator tests' stub step model

from tokenfab.serving.delivery import after_batch, after_run
from tokenfab.serving.replica import ReplicaSpec
from tokenfab.serving.simulator import Simulation
from tokenfab.serving.workload import LengthDist, WorkloadSpec

pytestmark = pytest.mark.unit


def _log(delivery_s: float, concurrency: int, num_requests: int, output_len: int, step_s: float = 0.010,
         frontend_s: float = 0.0):
    spec = ReplicaSpec(step=FixedTimer(step_s), kv_blocks=10_000, max_num_seqs=64, prefix_caching=False)
    wl = WorkloadSpec(arrival="closed", concurrency=concurrency, num_requests=num_requests, input=LengthDist(value=16),
                      output=LengthDist(value=output_len))
    return Simulation([spec], wl, delivery_s_per_token=delivery_s, frontend_s=frontend_s).run().log


def test_an_idle_server_delays_each_token_by_its_own_time():
    # One request, 4 tokens, 10 ms steps, 1 ms per token: the prefill ends at 10 ms and its token is delivered at
    # 11 ms; the three decodes end at 20, 30, 40 ms and the last token is delivered at 41 ms. TPOT stays 10 ms.
    log = _log(0.001, 1, 1, 4)
    assert log.column("first_token_s")[0] == pytest.approx(0.011)
    assert log.column("finish_s")[0] == pytest.approx(0.041)


def test_without_a_stage_tokens_arrive_as_iterations_end():
    log = _log(0.0, 1, 1, 4)
    assert log.column("first_token_s")[0] == pytest.approx(0.010)
    assert log.column("finish_s")[0] == pytest.approx(0.040)


def test_a_backlogged_server_spaces_the_tokens_of_requests_decoding_together():
    # 4 clients sent at t=0, 8 tokens each, 1 ms steps, 2 ms per token. Request 0 prefills alone in [0, 1]: its
    # token is delivered at 1 + 2 = 3 ms. Requests 1-3 prefill in [1, 2] beside request 0's decode: 4 tokens, the
    # server is free at 3, so their first tokens come at 3 + 8 = 11 ms. The decode run of the four then lasts 6
    # iterations [2, 8] (request 0's last token), 8 ms of tokens each, the server busy throughout: 11 + 48 = 59 ms;
    # one more iteration [8, 9] for the other three, 6 ms: 65 ms. Their TPOT, (65 - 11) / 7, is the server's
    # spacing of four streams, not the engine's 1 ms.
    log = _log(0.002, 4, 4, 8, step_s=0.001)
    first, finish = log.column("first_token_s"), log.column("finish_s")
    assert sorted(first) == pytest.approx([0.003, 0.011, 0.011, 0.011])
    assert sorted(finish) == pytest.approx([0.059, 0.065, 0.065, 0.065])


def test_a_saturated_server_sets_the_request_rate_by_littles_law():
    # 4 clients, 8 tokens a request, 1 ms engine steps (4 tokens per ms) against 2 ms per delivered token: the server
    # is the bottleneck, 16 ms of it per request, so 62.5 requests/s and a mean cycle (arrival to last token) of
    # C / X = 4 x 16 ms = 64 ms once the clients cycle.
    log = _log(0.002, 4, 400, 8, step_s=0.001)
    arrival, finish = log.column("arrival_s"), log.column("finish_s")
    late = arrival > 0.5  # past the first waves
    assert (finish[late] - arrival[late]).mean() == pytest.approx(0.064, rel=0.03)
    assert 400 / finish.max() == pytest.approx(62.5, rel=0.03)


def test_the_front_end_queues_behind_delivered_tokens():
    # One server for both: 1 client, 2 requests of 1 token, 5 ms front end, 10 ms steps, 20 ms per token. Request 0:
    # front end [0, 5], prefill [5, 15], its token delivered at 15 + 20 = 35 ms, when the client sends request 1:
    # front end [35, 40], prefill [40, 50], delivered at 70 ms.
    log = _log(0.020, 1, 2, 1, frontend_s=0.005)
    assert list(log.column("first_token_s")) == pytest.approx([0.035, 0.070])
    assert list(log.column("arrival_s")) == pytest.approx([0.0, 0.035])


def test_delivery_is_for_aggregated_serving():
    spec = ReplicaSpec(step=FixedTimer(0.01), kv_blocks=100, max_num_seqs=4, prefix_caching=False)
    wl = WorkloadSpec(arrival="closed", concurrency=1, num_requests=1, input=LengthDist(value=16), output=LengthDist(value=2))
    with pytest.raises(ValueError, match="aggregated"):
        Simulation([spec], wl, decode_specs=[spec], delivery_s_per_token=0.001)


@given(free=st.floats(0, 1), start=st.floats(0, 1), iters=st.integers(1, 50), dt=st.floats(1e-4, 0.05),
       work=st.floats(0, 0.05))
def test_a_runs_closed_form_equals_the_fifo_recursion(free, start, iters, dt, work):
    f = free
    for j in range(1, iters + 1):
        f = after_batch(f, start + j * dt, work)
    assert after_run(free, start, start + iters * dt, iters, work) == pytest.approx(f, rel=1e-9, abs=1e-12)


def test_the_fit_is_stored_for_the_release_it_was_fitted_on():
    import yaml

    from tokenfab.hardware.catalog import load_chip
    from tokenfab.serving import engines
    from tokenfab.serving.engines import engine_spec

    data = yaml.safe_load(engines.OVERHEADS_PATH.read_text())
    prov, row = data["provenance"]["delivery"], data["engines"]["trtllm"]["releases"]["1.0"]
    assert "--delivery-only" in prov["command"] and prov["split"] and prov["evidence"]
    assert row["delivery_s_per_token"] in prov["delivery_grid_s"] and row["frontend_s"] in prov["frontend_grid_s"]
    scores = row["fit_half_score"]  # the choice is the best fit-half pair of the grid
    assert min(scores, key=scores.get) == f"{row['frontend_s'] * 1e3:g}ms/{row['delivery_s_per_token'] * 1e6:g}us"
    mem = load_chip("h100-sxm").device_memory_bytes
    assert engine_spec("trtllm", mem, version="1.0.0rc3").delivery_s_per_token == row["delivery_s_per_token"]
    assert engine_spec("trtllm", mem, version="1.2.0rc6").delivery_s_per_token == 0.0  # another release: none
    assert engine_spec("trtllm", mem).delivery_s_per_token == 0.0  # no release named: the engine's own fields only
    assert engine_spec("vllm", mem).delivery_s_per_token == 0.0
