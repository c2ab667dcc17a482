"""The simulator's inlined common cases give the same bits as the general methods they stand in for (issue 9
item 1: a faster path only as an exact rewrite, tested equal). Each run is repeated with
`tokenfab.serving.replica.FAST_PATHS` off (every admission, prefill completion, decode finish and arrival through
the general code) and compared with `==`: every request's times, the time series, energy and counters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab import api
from tokenfab.serving import replica as replica_module
from tokenfab.serving.request import Request
from tokenfab.serving.workload import (
    LengthDist, WorkloadSpec, arrival_times, open_loop_requests, synthetic_lengths,
)

BASE = dict(model="qwen3-1.7b", hardware="l40s", seed=3)


def _run(kwargs: dict, fast: bool, monkeypatch) -> tuple:
    monkeypatch.setattr(replica_module, "FAST_PATHS", fast)
    r = api.simulate(**kwargs)
    s = {k: v for k, v in r.summary.items() if k != "sim_wall_s"}
    return r.requests_frame().to_numpy(dtype=float).tobytes(), r.timeseries_frame().to_numpy(dtype=float).tobytes(), repr(s)


@pytest.mark.property
@settings(max_examples=12, deadline=None)
@given(engine=st.sampled_from(["vllm", "sglang", "trtllm"]),
       mode=st.sampled_from(["rate", "concurrency", "offline"]),
       rate=st.floats(2.0, 80.0), prompt=st.integers(16, 3000), output=st.integers(1, 300),
       num_requests=st.integers(5, 120), max_num_seqs=st.sampled_from([None, 4, 64]),
       shared_prefix=st.sampled_from([0, 256]), preemption=st.sampled_from(["recompute", "swap"]))
def test_fast_paths_equal_general_paths(engine, mode, rate, prompt, output, num_requests, max_num_seqs, shared_prefix,
                                        preemption):
    kwargs = dict(BASE, engine=engine, input_dist=f"uniform:{max(1, prompt // 4)},{prompt}",
                  output_dist=f"uniform:1,{output}", num_requests=num_requests, max_num_seqs=max_num_seqs,
                  shared_prefix_tokens=shared_prefix, preemption=preemption)
    kwargs |= {"rate": dict(rate=rate), "concurrency": dict(concurrency=8), "offline": dict(offline=True)}[mode]
    with pytest.MonkeyPatch.context() as mp:
        fast = _run(kwargs, True, mp)
        general = _run(kwargs, False, mp)
    assert fast == general


@pytest.mark.property
def test_fast_paths_equal_general_paths_under_preemption(monkeypatch):
    """A KV cache that fills (a 70B model on two devices with long outputs): preemption and re-admission happen."""
    kwargs = dict(model="llama-3.1-70b", hardware="h100-sxm", tp=2, rate=50.0, num_requests=150, input_len=3000,
                  output_len=800, seed=3, max_num_seqs=512)
    fast = _run(kwargs, True, monkeypatch)
    general = _run(kwargs, False, monkeypatch)
    assert "'preempted': 0," not in fast[2]  # the case is exercised
    assert fast == general


def _reference_open_loop(spec: WorkloadSpec, rng: np.random.Generator):
    """`open_loop_requests` as written before its single-generator form: the zip of three iterators."""
    offline = spec.arrival == "offline"
    for rid, t, (p, o, h) in zip(range(spec.total_requests), arrival_times(spec, rng), synthetic_lengths(spec, rng)):
        yield Request(rid, 0.0 if offline else t, p, o, h)


def _fields(req: Request) -> tuple:
    return req.rid, req.arrival_s, req.prompt_len, req.output_len, req.hash_ids


@pytest.mark.property
@settings(max_examples=30, deadline=None)
@given(arrival=st.sampled_from(["poisson", "gamma", "offline"]), total=st.integers(1, 20000),
       warmup=st.integers(0, 50), seed=st.integers(0, 1 << 30), kind=st.sampled_from(["fixed", "uniform", "lognormal"]))
def test_plain_open_loop_equals_zip_of_iterators(arrival, total, warmup, seed, kind):
    lengths = LengthDist(kind=kind, value=700, low=3, high=900, mean=500.0, std=300.0)
    spec = WorkloadSpec(arrival=arrival, rate=9.0, cv=2.5, num_requests=total, warmup_requests=warmup,
                        input=lengths, output=lengths)
    rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
    got = [_fields(r) for r in open_loop_requests(spec, rng_a)]
    want = [_fields(r) for r in _reference_open_loop(spec, rng_b)]
    assert got == want
    assert rng_a.random() == rng_b.random()  # and the generator is left in the same state


@pytest.mark.property
@settings(max_examples=10, deadline=None)
@given(mode=st.sampled_from(["rate", "concurrency", "offline"]), engine=st.sampled_from(["vllm", "sglang", "trtllm"]),
       prompt=st.integers(16, 6000), output=st.integers(1, 300), num_requests=st.integers(5, 150),
       chunked=st.sampled_from([None, False]))
def test_single_replica_loop_equals_event_heap_loop(mode, engine, prompt, output, num_requests, chunked):
    """One replica fed straight from its arrivals runs without the event heap (`Simulation._loop_single`); the heap
    loop gives the same bits, invariants checked at every event. Prompts up to 6,000 tokens without chunked prefill
    are rejected now and then (the arrival's general path, in the closed loop a rejected client's next request)."""
    from tokenfab.serving.simulator import Simulation

    kwargs = dict(BASE, engine=engine, input_dist=f"uniform:{max(1, prompt // 4)},{prompt}",
                  output_dist=f"uniform:1,{output}", num_requests=num_requests, chunked_prefill=chunked)
    kwargs |= {"rate": dict(rate=30.0), "concurrency": dict(concurrency=8), "offline": dict(offline=True)}[mode]
    results = []
    for single in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            init = Simulation.__init__
            mp.setattr(Simulation, "__init__", lambda self, *a, **k: init(self, *a, **(k | {"check_invariants": True})))
            if not single:
                mp.setattr(Simulation, "_loop_single", lambda self, stream, only: self._loop_general(stream))
            results.append(_run(kwargs, True, mp))
    assert results[0] == results[1]


@pytest.mark.property
@given(bins=st.lists(st.integers(0, 50), min_size=1, max_size=32), g=st.integers(0, 10**6))
def test_one_iteration_run_needs_no_block_beyond_its_first(bins, g):
    """`Replica._start_run` and `interrupt` skip `_crossings` for a single iteration: the blocks a one-iteration
    run needs are its first iteration's, which `start` allocated (`_crossings(1)` is that bin exactly)."""
    from tokenfab.serving.replica import Replica, ReplicaSpec

    class Timer:
        def step(self, prefill, num_decode, decode_kv_len):
            return 1.0, 0.0

        def decode_pair(self, num_decode, kv_first, kv_last):
            return 1.0, 0.0, 1.0, 0.0

    r = Replica(0, ReplicaSpec(step=Timer(), kv_blocks=100, block_tokens=len(bins)))
    r.bins, r.g, r.num_decode = list(bins), g, sum(bins)
    assert r._crossings(1) - r.bins[(-g) % len(bins)] == 0
