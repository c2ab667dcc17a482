"""TensorRT-LLM's batch waiting (batch_wait_timeout_iters, batch_wait_max_tokens_ratio; `serving.batch_wait`):
prompts arriving while decodes run are held back until the wait counter reaches the timeout or the iteration's
tokens reach the ratio of the token budget. Hand-computed against a stub step model."""

import sys
from pathlib import Path

import pytest

from tokenfab import api
from tokenfab.errors import InvalidInputError
from tokenfab.serving.replica import Replica, ReplicaSpec
from tokenfab.serving.request import Request
from tokenfab.serving.simulator import Simulation
from tokenfab.serving.workload import LengthDist, WorkloadSpec

pytestmark = pytest.mark.unit

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import accuracy_serving  # noqa: E402  (bench/ is not a package)

PREFILL_S, DECODE_S, BUDGET = 0.050, 0.010, 1000


class PrefillDecodeTimer:
    """A step with any prompt in it takes PREFILL_S, a decode-only iteration DECODE_S."""

    def step(self, prefill, num_decode, decode_kv_len):
        return (PREFILL_S if prefill else DECODE_S), 0.0

    def decode_pair(self, num_decode, kv_first, kv_last):
        return DECODE_S, 0.0, DECODE_S, 0.0


class WaitingPolicy:
    """The scheduler-policy protocol with TensorRT-LLM's batch-waiting settings."""

    prefill_first, step_overhead_s, kv_full = False, 0.0, "preempt"

    def __init__(self, timeout_iters: int, max_tokens_ratio: float):
        self.batch_wait_timeout_iters, self.batch_wait_max_tokens_ratio = timeout_iters, max_tokens_ratio

    def padded_decode(self, num_decode: int) -> int:
        return num_decode


def _decoding(timeout_iters: int, ratio: float = 0.9) -> Replica:
    """A replica decoding one long request, prefilled alone at t = 0 (no decodes then: no waiting)."""
    spec = ReplicaSpec(step=PrefillDecodeTimer(), kv_blocks=10_000, max_num_seqs=64, max_num_batched_tokens=BUDGET,
                       chunked_prefill=False, prefix_caching=False, policy=WaitingPolicy(timeout_iters, ratio))
    r = Replica(0, spec)
    first = Request(0, 0.0, 64, 10_000)
    r.enqueue(first)
    r.complete(r.start(0.0))
    assert first.first_token_s == pytest.approx(PREFILL_S)
    return r


def _first_token(r: Replica, now: float, req: Request, arrivals: tuple = ()) -> float:
    """Drive the replica until `req` has its first token; `arrivals` (time, request) are queued when their time comes,
    cutting a decode run at its next iteration as the simulator does."""
    pending = sorted(arrivals, key=lambda a: a[0])
    end = r.start(now)
    while True:
        if pending and pending[0][0] < end:
            at, new = pending.pop(0)
            r.enqueue(new)
            end = r.interrupt(at) or end
            continue
        r.complete(end)
        if req.first_token_s >= 0:  # the replica is left idle at the end of that iteration
            return req.first_token_s
        end = r.start(end)


def test_a_prompt_beside_decodes_waits_the_timeout_in_iterations():
    # 64 prompt tokens + 1 decode < 0.9 x 1000: the counter runs 0..4 over five held decode iterations, and at 5 (the
    # timeout) the prompt goes in: first token after 5 decode iterations and its own prefill iteration
    r = _decoding(timeout_iters=5)
    late = Request(1, PREFILL_S, 64, 10)
    r.enqueue(late)
    assert _first_token(r, PREFILL_S, late) == pytest.approx(PREFILL_S + 5 * DECODE_S + PREFILL_S)


def test_a_prompt_reaching_the_token_ratio_goes_in_at_once():
    r = _decoding(timeout_iters=5, ratio=0.5)  # 600 + 1 >= 0.5 x 1000
    late = Request(1, PREFILL_S, 600, 10)
    r.enqueue(late)
    assert _first_token(r, PREFILL_S, late) == pytest.approx(2 * PREFILL_S)


def test_with_either_setting_at_zero_nothing_waits():
    # TensorRT-LLM's stop test is `count >= timeout_iters or tokens >= ratio x max_num_tokens`: 0 makes it always true
    for timeout, ratio in ((5, 0.0), (0, 0.9)):
        r = _decoding(timeout_iters=timeout, ratio=ratio)
        late = Request(1, PREFILL_S, 64, 10)
        r.enqueue(late)
        assert _first_token(r, PREFILL_S, late) == pytest.approx(2 * PREFILL_S)


def test_a_prompt_arriving_during_the_wait_goes_in_with_the_first_one():
    # one counter for the engine: the second prompt, queued after two held iterations, starts with the first
    r = _decoding(timeout_iters=5)
    first, second = Request(1, PREFILL_S, 64, 10), Request(2, PREFILL_S + 2 * DECODE_S, 64, 10)
    r.enqueue(first)
    t = _first_token(r, PREFILL_S, second, arrivals=((PREFILL_S + 1.5 * DECODE_S, second),))
    assert t == first.first_token_s == pytest.approx(PREFILL_S + 5 * DECODE_S + PREFILL_S)


def test_the_counter_restarts_when_prompts_go_in():
    r = _decoding(timeout_iters=3)
    a = Request(1, PREFILL_S, 64, 10_000)
    r.enqueue(a)
    t_a = _first_token(r, PREFILL_S, a)
    assert t_a == pytest.approx(PREFILL_S + 3 * DECODE_S + PREFILL_S)
    b = Request(2, t_a, 64, 10)
    r.enqueue(b)
    assert _first_token(r, t_a, b) == pytest.approx(t_a + 3 * DECODE_S + PREFILL_S)


def test_the_simulator_holds_each_arrival_for_about_the_timeout():
    # Poisson arrivals of long requests: decodes always run, so each prompt waits about the timeout in decode
    # iterations (less when it arrives during another's wait); TTFT grows by nearly timeout x decode step
    def ttft(timeout: int) -> float:
        spec = ReplicaSpec(step=PrefillDecodeTimer(), kv_blocks=100_000, max_num_seqs=256, max_num_batched_tokens=BUDGET,
                           chunked_prefill=False, prefix_caching=False, policy=WaitingPolicy(timeout, 0.9))
        wl = WorkloadSpec(arrival="poisson", rate=0.5, num_requests=400, input=LengthDist(value=64),
                          output=LengthDist(value=500))
        log = Simulation([spec], wl, seed=1).run().log
        return float((log.column("first_token_s") - log.column("arrival_s")).mean())
    grown = ttft(20) - ttft(0)
    assert 0.8 * 20 * DECODE_S < grown <= 20 * DECODE_S + 1e-9


def test_simulate_takes_batch_waiting_for_trtllm_without_attention_dp_only():
    common = dict(model="llama-3.1-8b", hardware="h100-sxm", concurrency=2, num_requests=4, input_len=128, output_len=8)
    with pytest.raises(InvalidInputError, match="TensorRT-LLM's"):
        api.simulate(engine="vllm", batch_wait_timeout_iters=20, batch_wait_max_tokens_ratio=0.9, **common)
    with pytest.raises(InvalidInputError, match="attention-DP"):
        api.simulate(model="qwen3-30b-a3b", hardware="h100-sxm", tp=1, dp=2, engine="trtllm", concurrency=2, num_requests=4,
                     input_len=128, output_len=8, batch_wait_timeout_iters=20, batch_wait_max_tokens_ratio=0.9)
    res = api.simulate(engine="trtllm", batch_wait_timeout_iters=20, batch_wait_max_tokens_ratio=0.9, **common)
    assert res.config["batch_wait_timeout_iters"] == 20 and res.config["batch_wait_max_tokens_ratio"] == 0.9
    assert "batch_wait_timeout_iters" not in api.simulate(engine="trtllm", **common).config


def test_inferencemax_recipe_waits_only_at_1k1k_below_tp8():
    kw = dict(input_len=1024, output_len=1024, tp=4, dtype="fp8", output_dist="uniform:900,1100")
    out = accuracy_serving.apply_recipe(kw, "inferencemax-trtllm-70b-b200")
    assert (out["batch_wait_timeout_iters"], out["batch_wait_max_tokens_ratio"], out["max_batched_tokens"]) == (20, 0.9, 16384)
    assert out["input_dist"] == out["output_dist"] == "uniform:819,1024"  # --random-range-ratio 0.8
    assert "batch_wait_timeout_iters" not in accuracy_serving.apply_recipe({**kw, "tp": 8}, "inferencemax-trtllm-70b-b200")
    assert "batch_wait_timeout_iters" not in accuracy_serving.apply_recipe({**kw, "output_len": 8192}, "inferencemax-trtllm-70b-b200")
    assert accuracy_serving.apply_recipe(kw, None) is kw


def test_cli_flags_reach_the_engine_and_bad_input_is_one_line(capsys):
    from testkit import run_cli

    base = ["simulate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--concurrency", "2", "--num-requests", "4",
            "--input-len", "128", "--output-len", "8", "--json"]
    code, out, _ = run_cli([*base, "--engine", "trtllm", "--batch-wait-timeout-iters", "20",
                            "--batch-wait-max-tokens-ratio", "0.9"], capsys)
    assert code == 0 and '"batch_wait_timeout_iters": 20' in out
    code, _, err = run_cli([*base, "--engine", "vllm", "--batch-wait-timeout-iters", "20"], capsys)
    assert code == 2 and "TensorRT-LLM's" in err and err.strip().count("\n") == 0
