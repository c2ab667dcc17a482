"""Serving simulator: queueing theory, agreement with predict, prefix caching, bad traces."""

import json

import numpy as np
import pytest

from tokenfab import api
from tokenfab.errors import DataFileError, InvalidInputError
from tokenfab.hardware.catalog import load_chip
from tokenfab.serving.engines import DEFAULT_ENGINE, engine_spec
from tokenfab.serving.replica import ReplicaSpec
from tokenfab.serving.simulator import Simulation
from tokenfab.serving.workload import LengthDist, TraceSpec, WorkloadSpec

pytestmark = pytest.mark.unit


class FixedTimer:
    """Every step takes `service_s` (a stub execution model)."""

    def __init__(self, service_s: float):
        self.service_s = service_s

    def step(self, prefill, num_decode, decode_kv_len):
        return self.service_s, 0.0

    def decode_pair(self, num_decode, kv_first, kv_last):
        return self.service_s, 0.0, self.service_s, 0.0


def test_md1_mean_wait_matches_the_queueing_formula():
    # One server, no batching (max_num_seqs=1), deterministic service S, Poisson arrivals at rate lam.
    # Pollaczek-Khinchine for M/D/1: mean wait in queue Wq = rho * S / (2 (1 - rho)).
    service, lam = 0.010, 70.0
    rho = lam * service
    spec = ReplicaSpec(step=FixedTimer(service), kv_blocks=10_000, max_num_seqs=1, prefix_caching=False)
    wl = WorkloadSpec(arrival="poisson", rate=lam, num_requests=200_000, input=LengthDist(value=64),
                      output=LengthDist(value=1))
    res = Simulation([spec], wl, seed=3).run()
    ttft = res.log.column("first_token_s") - res.log.column("arrival_s")
    wq = ttft.mean() - service
    assert wq == pytest.approx(rho * service / (2 * (1 - rho)), rel=0.05)


def test_single_request_equals_predict():
    """Same step model; simulate adds the default engine's fitted host time per iteration (predict has no engine)."""
    p = api.predict(model="llama-3.1-8b", hardware="h100-sxm", batch=1, input_len=2000, output_len=300)
    s = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", offline=True, num_requests=1, input_len=2000,
                     output_len=300).summary
    oh = engine_spec(DEFAULT_ENGINE, load_chip("h100-sxm").device_memory_bytes).step_overhead_s
    assert s["ttft_s"]["mean"] == pytest.approx(p.ttft_s + oh, rel=0.01)
    assert s["tpot_s"]["mean"] == pytest.approx(p.tpot_s + oh, rel=0.01)
    assert s["e2e_s"]["mean"] == pytest.approx(p.e2e_s + 300 * oh, rel=0.01)


def test_prefix_caching_strictly_lowers_ttft():
    common = dict(model="llama-3.1-8b", hardware="h100-sxm", rate=4, num_requests=400, input_len=3000,
                  output_len=64, shared_prefix_tokens=2048, seed=5)
    on = api.simulate(prefix_caching=True, **common).summary
    off = api.simulate(prefix_caching=False, **common).summary
    assert on["prefix_cache_hit_rate"] > 0.6 and off["prefix_cache_hit_rate"] == 0.0
    assert on["ttft_s"]["mean"] < 0.8 * off["ttft_s"]["mean"]


def test_mooncake_trace_prefix_reuse(shared_traces):
    path = shared_traces / "mooncake-fast25/synthetic_trace.jsonl"
    n = 1000
    # Leading-prefix reuse computed directly from the trace (a cache that never evicts):
    seen, prompt_tokens, hit_tokens = set(), 0, 0
    with path.open() as f:
        for line, _ in zip(f, range(n)):
            rec = json.loads(line)
            k = 0
            while k < len(rec["hash_ids"]) and rec["hash_ids"][k] in seen:
                k += 1
            hit_tokens += min(k, (rec["input_length"] - 1) // 512) * 512
            prompt_tokens += rec["input_length"]
            seen.update(rec["hash_ids"])
    common = dict(model="qwen3-1.7b", hardware="h200-sxm", trace=str(path), num_requests=n, rate_scale=0.25)
    on = api.simulate(prefix_caching=True, **common).summary
    off = api.simulate(prefix_caching=False, **common).summary
    # The KV cache (~1M tokens) holds far fewer than the trace's unique prompt blocks (~15M tokens), so LRU
    # eviction keeps the hit rate below the infinite-cache bound; it must still be positive and lower TTFT.
    assert 0.0 < on["prefix_cache_hit_rate"] <= hit_tokens / prompt_tokens
    assert on["ttft_s"]["mean"] < off["ttft_s"]["mean"]


def test_prefix_hits_exact_when_everything_fits(tmp_path):
    # Three requests: B and C extend A's first two 512-token blocks; C arrives after B and shares three.
    rows = [(0, 1536, [1, 2, 3]), (5000, 2048, [1, 2, 4, 5]), (10000, 2048, [1, 2, 4, 6])]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": 4, "hash_ids": h}) + "\n"
                            for t, n, h in rows))
    s = api.simulate(model="qwen3-1.7b", hardware="h100-sxm", trace=str(path), num_requests=3).summary
    assert s["prefix_cache_hit_rate"] == pytest.approx((2 * 512 + 3 * 512) / (1536 + 2048 + 2048))


def test_same_seed_same_output():
    kw = dict(model="qwen3-8b", hardware="h20", rate=8, num_requests=300, input_dist="lognormal:800,400",
              output_dist="lognormal:200,150", seed=11)
    a, b = api.simulate(**kw).summary, api.simulate(**kw).summary
    a.pop("sim_wall_s"), b.pop("sim_wall_s")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    c = api.simulate(**{**kw, "seed": 12}).summary
    assert c["ttft_s"]["mean"] != a["ttft_s"]["mean"]


def test_closed_loop_keeps_concurrency():
    res = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", concurrency=1, num_requests=20, input_len=128, output_len=16)
    arrival, finish = res.log.column("arrival_s"), res.log.column("finish_s")
    assert np.allclose(arrival[1:], finish[:-1])  # one client: each request starts when the last one ends
    wide = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", concurrency=8, num_requests=200, input_len=128,
                        output_len=64).summary
    assert wide["mean_batch_size"] <= 8.0 + 1e-9 and wide["completed"] == 200


def test_disaggregated_prefill_and_decode_pools():
    s = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", rate=10, num_requests=300, prefill_replicas=1,
                     decode_replicas=2).summary
    assert s["completed"] == 300 and s["ttft_s"]["p50"] > 0 and s["tpot_s"]["p50"] > 0


def test_goodput_counts_slo_hits():
    s = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", rate=25, num_requests=500, slo_ttft_ms=100, slo_tpot_ms=30).summary
    assert 0 <= s["goodput_requests_per_s"] <= s["requests_per_s"]
    assert s["slo_attainment"] < 1.0


@pytest.mark.parametrize("text, match", [
    ("TIME,ContextTokens\n1,2\n", "needs columns"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,10,5\n2023-11-16 18:15:45.1,10,5\n", "backwards"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,10,5\n", "timestamp"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,ten,5\n", "integers"),
])
def test_bad_azure_traces(tmp_path, text, match):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataFileError, match=match):
        api.simulate(trace=str(path), num_requests=10)


def test_bad_mooncake_and_rejections(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 10}\n')
    with pytest.raises(DataFileError, match="missing field 'output_length'"):
        api.simulate(trace=str(path), num_requests=10)
    path.write_text('{"timestamp": 0, "input_length": 10, "output_length": 0}\n'
                    '{"timestamp": 5, "input_length": 100000, "output_length": 5}\n'
                    '{"timestamp": 9, "input_length": 100, "output_length": 5}\n')
    s = api.simulate(model="llama-2-7b", hardware="h100-sxm", trace=str(path), num_requests=10).summary
    assert s["completed"] == 1 and s["rejected"] == 2
    assert set(s["rejected_reasons"]) == {"zero-length prompt or output", "longer than the model's 4096-token context"}


def test_bad_simulation_input():
    with pytest.raises(InvalidInputError, match="exactly one"):
        api.simulate(rate=1, offline=True)
    with pytest.raises(InvalidInputError, match="rate"):
        api.simulate(rate=-1)
    with pytest.raises(InvalidInputError, match="no room for a KV cache"):
        api.simulate(model="llama-3.1-70b", hardware="h100-sxm", rate=1)


def test_trace_window_and_rate_scale(shared_traces):
    spec = WorkloadSpec(arrival="trace", num_requests=10**9, trace=TraceSpec(
        path=str(shared_traces / "azure-llm-2023/AzureLLMInferenceTrace_code.csv"), start_s=600, duration_s=60, rate_scale=2.0))
    from tokenfab.serving.workload import open_loop_requests

    from tokenfab.serving.traces import read_trace

    rows = [r for r in read_trace(spec.trace.path) if 600 <= r.arrival_s <= 660]
    reqs = list(open_loop_requests(spec, np.random.default_rng(0)))
    assert len(reqs) == len(rows) > 0
    assert reqs[-1].arrival_s == pytest.approx((rows[-1].arrival_s - 600) / 2.0)
    assert max(r.arrival_s for r in reqs) <= 30.0 + 1e-9
