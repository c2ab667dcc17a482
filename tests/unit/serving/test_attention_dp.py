"""Attention-DP ranks: TensorRT-LLM's context balancing (when held prompts start) and lock-step prefill costing."""

import pytest

from tokenfab import api
from tokenfab.errors import InvalidInputError
from tokenfab.serving.attention_dp import AttentionDpBalance, BalanceGate, LockstepTimer, parse_balance
from tokenfab.serving.replica import Replica, ReplicaSpec
from tokenfab.serving.request import Request

pytestmark = pytest.mark.unit

PREFILL_S, DECODE_S = 0.050, 0.010


class PrefillDecodeTimer:
    """A step with any prompt in it takes PREFILL_S, a decode-only iteration DECODE_S."""

    def step(self, prefill, num_decode, decode_kv_len):
        return (PREFILL_S if prefill else DECODE_S), 0.0

    def decode_pair(self, num_decode, kv_first, kv_last):
        return DECODE_S, 0.0, DECODE_S, 0.0


def _ranks(timeout_iters: int, batching_wait_iters: int = 0, num: int = 2) -> list[Replica]:
    spec = ReplicaSpec(step=PrefillDecodeTimer(), kv_blocks=10_000, max_num_seqs=64, prefix_caching=False)
    ranks = [Replica(i, spec) for i in range(num)]
    gate = BalanceGate(AttentionDpBalance(timeout_iters=timeout_iters, batching_wait_iters=batching_wait_iters))
    for r in ranks:
        gate.attach(r)
    return ranks


def _run_until(rank: Replica, now: float, until_first_token: Request) -> float:
    """Drive one rank alone (its siblings frozen) until `until_first_token` has its first token; returns that time."""
    while until_first_token.first_token_s < 0:
        end = rank.start(now)
        rank.complete(end)
        now = end
    return until_first_token.first_token_s


def _decoding_pair(timeout_iters: int, batching_wait_iters: int = 0) -> list[Replica]:
    """Two ranks, each decoding one long request released together at t = 0 and prefilled in one iteration."""
    ranks = _ranks(timeout_iters, batching_wait_iters)
    for i, r in enumerate(ranks):
        r.enqueue(Request(i, 0.0, 64, 10_000))
    assert ranks[0].gate.balanced() == ranks  # every rank has a prompt: all start now
    for r in ranks:
        r.complete(r.start(0.0))  # the prefill iteration: each rank is at iteration 1, decoding
    return ranks


def test_a_prompt_on_one_rank_waits_for_the_balance_timeout_cycle():
    # timeout 5 iterations, counted from the balanced start at iteration 0: rank 0 is at iteration 1 when a
    # prompt arrives, so it decodes 4 more iterations (to iteration 5) and then prefills it.
    ranks = _decoding_pair(timeout_iters=5)
    late = Request(2, PREFILL_S, 64, 10)
    ranks[0].enqueue(late)
    assert ranks[0].gate.balanced() == []  # rank 1 has no prompt waiting
    assert _run_until(ranks[0], PREFILL_S, late) == pytest.approx(PREFILL_S + 4 * DECODE_S + PREFILL_S)


def test_without_balancing_the_same_prompt_starts_at_the_next_iteration():
    ranks = _decoding_pair(timeout_iters=5)
    for r in ranks:
        r.gate = None
    late = Request(2, PREFILL_S, 64, 10)
    ranks[0].enqueue(late)
    assert _run_until(ranks[0], PREFILL_S, late) == pytest.approx(2 * PREFILL_S)


def test_prompts_on_every_rank_start_together_after_the_batching_wait():
    ranks = _decoding_pair(timeout_iters=50, batching_wait_iters=3)
    late = [Request(2 + i, PREFILL_S, 64, 10) for i in range(2)]
    for r, req in zip(ranks, late):
        r.enqueue(req)
    assert ranks[0].gate.balanced() == []  # every rank also decodes: they wait 3 iterations to batch more
    assert _run_until(ranks[0], PREFILL_S, late[0]) == pytest.approx(PREFILL_S + 3 * DECODE_S + PREFILL_S)


def test_a_rank_without_generation_requests_releases_the_prompts():
    ranks = _ranks(timeout_iters=50)
    ranks[1].enqueue(Request(0, 0.0, 64, 10_000))
    ranks[1].gate.release_at.clear()  # rank 1 stays without a prompt released: only rank 0 matters here
    first = Request(1, 0.0, 64, 10)
    ranks[0].enqueue(first)
    assert _run_until(ranks[0], 0.0, first) == pytest.approx(PREFILL_S)  # no rank decodes: nothing to wait for


def test_lockstep_prefill_is_costed_between_alone_and_together_by_the_busy_siblings():
    alone = lambda prefill, n, kv: (1.0, 10.0)  # noqa: E731
    together = lambda prefill, n, kv: (3.0, 30.0)  # noqa: E731
    timer = LockstepTimer(alone, together, PrefillDecodeTimer().decode_pair)
    spec = ReplicaSpec(step=timer, kv_blocks=10_000, prefix_caching=False)
    ranks = [Replica(i, spec) for i in range(3)]
    for r in ranks:
        timer.join(r)
    prompt = ((1, 64, 64),)
    assert timer.step(prompt, 0, 0.0) == (1.0, 10.0)  # no sibling prefills
    ranks[1].enqueue(Request(0, 0.0, 64, 10))
    ranks[1].start(0.0)  # rank 1 is now in a prefill iteration: 1 of 2 siblings busy
    assert timer.step(prompt, 0, 0.0) == pytest.approx((2.0, 20.0))
    assert timer.step((), 4, 100.0) == (1.0, 10.0)  # decode-only steps are the same either way


def test_balance_setting_parsing():
    assert parse_balance(0, 0) is None
    assert parse_balance(60, 0) == AttentionDpBalance(timeout_iters=60, batching_wait_iters=0)
    with pytest.raises(InvalidInputError, match="needs attention-DP balance on"):
        parse_balance(0, 10)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(engine="vllm", dp=2, ep=2), "TensorRT-LLM"),
    (dict(engine="trtllm", dp=1), "--dp >= 2"),
])
def test_balancing_needs_an_aggregated_trtllm_attention_dp_instance(kwargs, needle):
    with pytest.raises(InvalidInputError, match=needle):
        api.simulate(model="qwen3-30b-a3b", hardware="h100-sxm", concurrency=4, num_requests=8, input_len=128,
                     output_len=8, adp_timeout_iters=60, **kwargs)


def test_prefill_sequence_limit_only_applies_to_pd_pools():
    with pytest.raises(InvalidInputError, match="prefill-max-num-seqs"):
        api.simulate(model="qwen3-30b-a3b", hardware="h100-sxm", concurrency=4, num_requests=8, input_len=128,
                     output_len=8, prefill_max_num_seqs=1)


def test_a_prefill_pool_limited_to_one_sequence_per_rank_serves_a_burst_one_prompt_at_a_time():
    import numpy as np

    common = dict(model="qwen3-30b-a3b", hardware="h100-sxm", engine="trtllm", offline=True, input_len=512,
                  output_len=4, prefill_replicas=1, decode_replicas=1, num_requests=8)
    one = np.sort(api.simulate(prefill_max_num_seqs=1, **common).requests_frame()["ttft_s"].to_numpy())
    gaps = np.diff(one)
    assert gaps.min() > 0 and gaps.max() == pytest.approx(gaps.min(), rel=1e-6)  # 8 prefill steps in turn, alike
    free = api.simulate(**common).requests_frame()["ttft_s"].to_numpy()
    assert len(np.unique(free.round(9))) <= 3  # without the limit the burst prefills in one or two batches


def test_a_pd_request_shows_its_first_token_after_the_kv_transfer_and_its_first_decode_iteration():
    from tokenfab.serving.simulator import Simulation
    from tokenfab.serving.workload import LengthDist, WorkloadSpec

    spec = ReplicaSpec(step=PrefillDecodeTimer(), kv_blocks=10_000, prefix_caching=False, role="prefill")
    decode = ReplicaSpec(step=PrefillDecodeTimer(), kv_blocks=10_000, prefix_caching=False, role="decode")
    wl = WorkloadSpec(arrival="offline", num_requests=1, input=LengthDist(value=1000), output=LengthDist(value=5))
    res = Simulation([spec], wl, decode_specs=[decode], transfer_s_per_token=1e-5).run()
    transfer_s = 1000 * 1e-5
    assert res.log.column("first_token_s")[0] == pytest.approx(PREFILL_S + transfer_s + DECODE_S)
    # tokens 2..5 take 4 decode iterations; the client sees token 1 with token 2, at the end of the first
    assert res.log.column("finish_s")[0] == pytest.approx(PREFILL_S + transfer_s + 4 * DECODE_S)


class LockstepStub(PrefillDecodeTimer):
    """PrefillDecodeTimer shared by an instance's ranks (the simulator joins them, as it joins a LockstepTimer)."""

    def __init__(self):
        self.ranks = []

    def join(self, rank):
        self.ranks.append(rank)


def _lockstep_instance(num: int = 2):
    from tokenfab.serving.simulator import Simulation
    from tokenfab.serving.workload import LengthDist, WorkloadSpec

    spec = ReplicaSpec(step=LockstepStub(), kv_blocks=10_000, prefix_caching=False)
    wl = WorkloadSpec(arrival="offline", num_requests=1, input=LengthDist(value=64), output=LengthDist(value=5))
    return Simulation([spec] * num, wl)


def test_a_rank_starts_its_prompt_when_the_siblings_prefill_iteration_ends():
    sim = _lockstep_instance()
    r0, r1 = sim.replicas
    assert r0.siblings is r1.siblings and r0.siblings == [r0, r1]
    r0.enqueue(Request(0, 0.0, 64, 5))
    assert sim._start_rank(r0, 0.0) == pytest.approx(PREFILL_S)
    r1.enqueue(Request(1, 0.010, 64, 5))
    assert sim._start_rank(r1, 0.010) is None  # rank 0 is inside its prefill iteration: rank 1 waits for its end
    at, _, kind, held = sim.pending[0]
    assert (at, kind, held) == (pytest.approx(PREFILL_S), 3, r1)
    r0.complete(PREFILL_S)
    sim._wake(r1, PREFILL_S)
    assert r1.work is not None and r1.work.end_s == pytest.approx(2 * PREFILL_S)
    # ranks starting at the same moment share the iteration: rank 0 may start at rank 1's start
    assert sim._start_rank(r0, PREFILL_S) is not None


def test_a_prefill_iteration_cuts_the_siblings_decode_run_at_its_next_iteration():
    sim = _lockstep_instance()
    r0, r1 = sim.replicas
    r1.enqueue(Request(0, 0.0, 64, 1_000))
    r1.complete(sim._start_rank(r1, 0.0))  # prefilled at PREFILL_S
    run_end = sim._start_rank(r1, PREFILL_S)  # a decode run of many iterations
    assert r1.work.run and run_end > PREFILL_S + 10 * DECODE_S
    r0.enqueue(Request(1, PREFILL_S + 0.5 * DECODE_S, 64, 5))
    sim._start_rank(r0, PREFILL_S + 0.5 * DECODE_S)
    assert r1.work.end_s == pytest.approx(PREFILL_S + DECODE_S)  # stops after the iteration it is in
    r1.complete(r1.work.end_s)
    assert sim._start_rank(r1, PREFILL_S + DECODE_S) is None  # and waits for rank 0's prefill iteration
    assert sim.pending[-1][0] == pytest.approx(PREFILL_S + 0.5 * DECODE_S + PREFILL_S)


def test_ranks_on_their_own_clocks_without_a_shared_timer():
    sim = _lockstep_instance()
    from tokenfab.serving.simulator import Simulation
    from tokenfab.serving.workload import WorkloadSpec

    plain = ReplicaSpec(step=PrefillDecodeTimer(), kv_blocks=10_000, prefix_caching=False)
    other = Simulation([plain, plain], WorkloadSpec(arrival="offline", num_requests=1))
    assert all(r.siblings is None for r in other.replicas) and sim.replicas[0].siblings is not None


def test_a_prefill_iteration_starts_the_prompts_waiting_on_every_rank():
    sim = _lockstep_instance(3)
    r0, r1, r2 = sim.replicas
    r0.enqueue(Request(0, 0.0, 64, 5))
    r1.enqueue(Request(1, 0.0, 64, 5))  # queued, not yet started
    assert sim._start_rank(r0, 0.0) == pytest.approx(PREFILL_S)
    assert r1.work is not None and r1.work.end_s == pytest.approx(PREFILL_S)  # joined rank 0's iteration
    assert r2.work is None  # nothing to run


def test_prompts_released_on_one_rank_restart_every_ranks_wait_counter():
    ranks = _decoding_pair(timeout_iters=5)
    ranks[1].g = 3
    gate = ranks[0].gate
    gate.restart()
    assert gate.cycle_start == {0: 1, 1: 3}
    late = Request(2, PREFILL_S, 64, 10)
    ranks[1].enqueue(late)
    assert not gate.admits(ranks[1]) and ranks[1].hold_iters == 5  # a full cycle from the restart


def test_a_sibling_whose_prompt_the_balance_holds_joins_when_another_rank_starts_prompts():
    sim = _lockstep_instance()
    r0, r1 = sim.replicas
    gate = BalanceGate(AttentionDpBalance(timeout_iters=1000))
    for r in (r0, r1):
        gate.attach(r)
        r.enqueue(Request(r.index, 0.0, 64, 10_000))
    gate.balanced()
    sim._start_rank(r0, 0.0)  # both prefill together (rank 1 joins rank 0's iteration), then decode
    assert r1.work.end_s == r0.work.end_s == pytest.approx(PREFILL_S)
    for r in (r0, r1):
        r.complete(PREFILL_S)
    held = Request(2, PREFILL_S, 64, 5)
    r1.enqueue(held)
    sim._start_rank(r1, PREFILL_S)
    assert r1.work.run and r1.waiting  # held back by the balance (1000-iteration timeout), decoding on
    sim._start_rank(r0, PREFILL_S)
    assert r0.work.run
    r0.enqueue(Request(3, PREFILL_S + 0.5 * DECODE_S, 64, 5))
    r0.complete(r0.interrupt(PREFILL_S + 0.5 * DECODE_S))
    gate.release_at[r0.index] = r0.g  # rank 0's prompt may start (as a balanced moment would release it)
    sim._start_rank(r0, PREFILL_S + DECODE_S)
    assert r0.work.chunks
    # rank 1's held prompt starts in the same iteration: its decode run stops at its next iteration, where it may
    # start although rank 0 is inside its prefill iteration
    r1.complete(r1.work.end_s)
    assert r1.work is None and sim._start_rank(r1, r1.idle_since) is not None and r1.work.chunks[0][0] is held
    assert gate.cycle_start == {0: r0.g, 1: r1.g}  # the wait counters restarted with the prompts started


def test_sglang_dp_attention_ranks_prefill_the_chunk_divided_by_the_dp_size():
    # SGLang server_args _handle_data_parallelism: chunked_prefill_size // dp_size per DP rank (8192 on an 80 GB H100)
    common = dict(model="qwen3-30b-a3b", hardware="h100-sxm", engine="sglang", tp=1, dp=2, ep=2, offline=True,
                  num_requests=1, input_len=12_000, output_len=2)
    default = api.simulate(**common).summary["ttft_s"]["mean"]
    assert default == pytest.approx(api.simulate(max_batched_tokens=8192 // 2, **common).summary["ttft_s"]["mean"])
    assert default > api.simulate(max_batched_tokens=8192, **common).summary["ttft_s"]["mean"]


def test_speculative_attention_dp_ranks_cost_their_shared_prefills_in_lock_step_too(monkeypatch):
    """A speculative MoE instance with attention-DP under traffic gets the lock-step prefill costing as a plain one
    does, its 'together' step being the speculative timer over the all-ranks-prefilling step model (a mixed step
    verifies the decoders' drafts beside the prompts)."""
    import tokenfab.serving.attention_dp as adp
    from tokenfab.serving.speculative import SpeculativeTimer

    built = []
    real = adp.LockstepTimer

    def recording(alone, together, decode_pair):
        built.append(together)
        return real(alone, together, decode_pair)

    monkeypatch.setattr(adp, "LockstepTimer", recording)
    api.simulate(model="qwen3-30b-a3b", hardware="h100-sxm", dp=2, ep=2, concurrency=4, num_requests=8, input_len=128,
                 output_len=8, spec_method="eagle", spec_tokens=2, spec_acceptance=0.7)
    assert built and all(isinstance(getattr(t, "__self__", None), SpeculativeTimer) for t in built)
    assert built[0](((1, 128, 128),), 2, 200.0)[0] > 0.0
