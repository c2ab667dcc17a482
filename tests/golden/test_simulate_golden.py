"""Frozen `simulate` outputs: any change must be deliberate (rerun with --update-golden and review the diff)."""

from pathlib import Path

import pytest

from testkit import check_golden

from tokenfab import api

pytestmark = pytest.mark.golden

GOLDEN = Path(__file__).with_name("simulate_golden.json")
BASE = dict(model="qwen3-1.7b", hardware="l40s", input_len=512, output_len=64, num_requests=300, seed=7)
CASES = {
    "vllm/poisson": BASE | dict(rate=8.0, engine="vllm"),
    "sglang/closed-16": BASE | dict(concurrency=16, warmup_requests=16, engine="sglang"),
    "trtllm/closed-16": BASE | dict(concurrency=16, warmup_requests=16, engine="trtllm"),
    "vllm/offline-lognormal": BASE | dict(offline=True, input_dist="lognormal:600,300", engine="vllm"),
    "vllm/pd-1-2": BASE | dict(rate=10.0, prefill_replicas=1, decode_replicas=2, engine="vllm"),
    "llama-8b/h100/tp2-prefix": dict(model="llama-3.1-8b", hardware="h100-sxm", tp=2, concurrency=32, num_requests=400,
                                     input_len=2048, output_len=128, shared_prefix_tokens=1024, seed=1),
}
FIELDS = ("throughput_tokens_per_s", "requests_per_s", "energy_j_per_token", "completed", "preempted", "prefix_cache_hit_rate")


def _current() -> dict:
    out = {}
    for key, kwargs in CASES.items():
        s = api.simulate(**kwargs).summary
        out[key] = {f: s[f] for f in FIELDS} | {f"{m}_{p}": s[m][p] for m in ("ttft_s", "tpot_s", "e2e_s") for p in ("p50", "p99", "mean")}
    return out


def test_simulations_match_golden(update_golden):
    check_golden(GOLDEN, _current(), update_golden)
