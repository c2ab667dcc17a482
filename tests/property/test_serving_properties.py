"""Conservation invariants of the serving simulator on random small workloads."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab import api
from tokenfab.serving.simulator import SchedulerConfig, Simulation, replica_spec
from tokenfab.serving.workload import LengthDist, WorkloadSpec

pytestmark = pytest.mark.property


@settings(max_examples=25)
@given(
    rate=st.floats(1.0, 200.0), n=st.integers(1, 120), prompt=st.integers(1, 3000), output=st.integers(1, 400),
    block=st.sampled_from([8, 16, 32]), kv_tokens=st.integers(4096, 40_000), max_seqs=st.integers(1, 64),
    budget=st.sampled_from([256, 2048, 8192]), caching=st.booleans(), preemption=st.sampled_from(["recompute", "swap"]),
    shared=st.sampled_from([0, 256, 1024]), seed=st.integers(0, 1000),
)
def test_every_request_completes_once_and_blocks_are_conserved(rate, n, prompt, output, block, kv_tokens, max_seqs,
                                                               budget, caching, preemption, shared, seed):
    d = api.deployment("qwen3-1.7b", "l40s")
    sched = SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=budget, block_tokens=block,
                            prefix_caching=caching, preemption=preemption)
    spec = replica_spec(d.step_model, d.memory, sched, hash_block_tokens=block)
    spec = type(spec)(**{**spec.__dict__, "kv_blocks": kv_tokens // block})  # a small cache forces preemptions
    wl = WorkloadSpec(arrival="poisson", rate=rate, num_requests=n, input=LengthDist(kind="uniform", low=1, high=prompt),
                      output=LengthDist(kind="uniform", low=1, high=output), shared_prefix_tokens=min(shared, prompt),
                      prefix_block_tokens=block)
    res = Simulation([spec], wl, seed=seed, check_invariants=True).run()  # raises on any leak or lost request
    s = res.summary
    assert s["completed"] + s["rejected"] == n
    rids = res.log.column("arrival_s")
    assert len(rids) == s["completed"]
    first, finish = res.log.column("first_token_s"), res.log.column("finish_s")
    assert (first >= res.log.column("arrival_s")).all() and (finish >= first).all()


@settings(max_examples=10)
@given(replicas=st.integers(1, 4), router=st.sampled_from(["round-robin", "least-outstanding", "prefix-affinity"]),
       seed=st.integers(0, 100))
def test_multi_replica_conservation(replicas, router, seed):
    s = api.simulate(model="qwen3-1.7b", hardware="l40s", rate=40.0, num_requests=200, input_dist="uniform:10,2000",
                     output_dist="uniform:1,300", replicas=replicas, router=router, seed=seed, shared_prefix_tokens=128).summary
    assert s["completed"] + s["rejected"] == 200
    assert s["output_tokens"] > 0
