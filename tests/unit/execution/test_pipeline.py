"""Pipeline parallelism in steady state: micro-batches in flight, the round trip, the fill, the engines' limits."""

from __future__ import annotations

import pytest

from tokenfab import api
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.pipeline import micro_batches, num_micro_batches
from tokenfab.serving.engines import engine_spec

pytestmark = pytest.mark.unit


def test_num_micro_batches():
    assert num_micro_batches(1, 500) == 1
    assert num_micro_batches(8, 3) == 3  # fewer sequences than stages: one micro-batch each
    assert num_micro_batches(8, 500) == 8
    assert num_micro_batches(4, 0) == 1


def test_prompts_spread_over_micro_batches_not_copied_into_each():
    """17 prompts of 2048 tokens and 137 decodes on 8 stages: longest-first to the least-loaded micro-batch gives the
    first 3 prompts and the rest 2 (not 17 each, as rounding every prompt group up would); the decodes 17 each, the
    one left over to the first of the least-loaded (micro-batch 1)."""
    batch = StepBatch(tuple((1, 2048, 2048) for _ in range(17)), 137, 3000.0)
    shapes = micro_batches(batch, 8)
    assert shapes == [(StepBatch(((3, 2048, 2048),), 17, 3000.0), 1), (StepBatch(((2, 2048, 2048),), 18, 3000.0), 1),
                      (StepBatch(((2, 2048, 2048),), 17, 3000.0), 6)]
    assert sum(mb.num_sequences * n for mb, n in shapes) == batch.num_sequences
    assert sum(mb.prefill_tokens * n for mb, n in shapes) == batch.prefill_tokens


def test_decodes_go_to_micro_batches_without_prompts():
    """One 1000-token prompt and 5 decodes over 3 micro-batches: the prompt alone in one, decodes 1 + 2 + 2 with the
    extra ones on the two that hold no prompt."""
    shapes = micro_batches(StepBatch(((1, 1000, 1000),), 5, 1200.0), 3)
    assert shapes == [(StepBatch(((1, 1000, 1000),), 1, 1200.0), 1), (StepBatch((), 2, 1200.0), 2)]


def test_one_micro_batch_is_the_batch():
    batch = StepBatch(((3, 100, 100),), 7, 500.0)
    assert micro_batches(batch, 1) == [(batch, 1)]


@pytest.fixture(scope="module")
def pp4():
    return api.deployment("llama-3.1-8b", "h100-sxm", tp=1, pp=4).step_model


def test_step_is_the_round_trip_of_the_busiest_micro_batch(pp4):
    """64 decodes on 4 stages: 4 micro-batches of 16; the step is 4 stage times of 16 sequences plus 3 hops of 16
    tokens' activations (not the 4 + 3 stage times of filling the pipeline every step)."""
    stage_s, busy_j = pp4._stage_fast(StepBatch((), 16, 2000.0))
    hop_s = pp4._p2p_s(16)
    step = pp4.step(StepBatch((), 64, 2000.0))
    assert step.time_s == pytest.approx(4 * stage_s + 3 * hop_s, rel=1e-12)
    # every device busy with the 4 micro-batches' stages, idle for the hops
    idle_j = pp4.power.idle_w * 3 * hop_s
    assert step.energy_j == pytest.approx(pp4.power.to_wall((4 * busy_j + idle_j) * 4, step.time_s), rel=1e-9)


def test_few_sequences_pay_the_whole_round_trip(pp4):
    """One sequence on 4 stages: its token needs all 4 stages, whatever the number of micro-batches."""
    stage_s, _ = pp4._stage_fast(StepBatch((), 1, 2000.0))
    assert pp4.step(StepBatch((), 1, 2000.0)).time_s == pytest.approx(4 * stage_s + 3 * pp4._p2p_s(1), rel=1e-12)


def test_pipeline_fill_is_paid_once_by_a_static_batch(pp4):
    """A static batch's prefill enters an empty pipeline: its last micro-batch comes 3 stage times after a round trip;
    predict's TTFT is the round trip plus that fill, and its TPOT a steady-state step."""
    batch = StepBatch(((8, 512, 512),))
    stage_s, _ = pp4._stage_fast(StepBatch(((2, 512, 512),)))
    fill_s, fill_j = pp4.pipeline_fill(batch)
    assert fill_s == pytest.approx(3 * stage_s, rel=1e-12)
    assert fill_j == pytest.approx(pp4.power.to_wall(pp4.power.idle_w * fill_s * 4, fill_s), rel=1e-12)
    r = api.predict(model="llama-3.1-8b", hardware="h100-sxm", tp=1, pp=4, batch=8, input_len=512, output_len=2)
    assert r.ttft_s == pytest.approx(pp4.step(batch).time_s + fill_s, rel=1e-12)
    assert r.tpot_s == pytest.approx(pp4.step(StepBatch((), 8, 513.0)).time_s, rel=1e-12)
    one = api.deployment("llama-3.1-8b", "h100-sxm", tp=1, pp=1).step_model
    assert one.pipeline_fill(batch) == (0.0, 0.0)


def test_trtllm_limits_bound_each_micro_batch_vllm_the_replica():
    """TensorRT-LLM: max_batch_size and max_num_tokens per micro-batch (capacity scheduler max_batch_size x pp_size),
    CUDA graphs captured per micro-batch; vLLM: its limits bound all batches in flight together."""
    trt = engine_spec("trtllm", 96e9, 1, cuda_graph_batch_sizes=(1, 2, 4, 8, 16))
    p4 = trt.pipelined(4)
    assert (p4.max_num_seqs, p4.max_num_batched_tokens) == (4 * trt.max_num_seqs, 4 * trt.max_num_batched_tokens)
    assert p4.cuda_graph_sizes == (4, 8, 16, 32, 64)
    assert p4.padded_decode(9) == 16  # 9 decodes over 4 micro-batches: 3 each at most, padded to the captured 4
    assert trt.pipelined(1) is trt
    vllm = engine_spec("vllm", 96e9, 1)
    assert vllm.pipelined(4) is vllm


def test_simulated_trtllm_pipeline_holds_pp_times_max_batch_size():
    """Offline, 200 requests, max_batch_size 16 on 2 stages: up to 32 sequences run at once (more than 16, as the
    engine's two micro-batches of 16 do); the KV sizing leaves room for one micro-batch's activations."""
    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", tp=1, pp=2, engine="trtllm", offline=True, num_requests=200,
              input_len=128, output_len=256, max_num_seqs=16, max_batched_tokens=2048)
    r = api.simulate(**kw)
    assert 16 < r.summary["mean_batch_size"] <= 32
    assert r.config["max_num_seqs"] == 16  # the engine's own setting is what the run reports
    from tokenfab.api.simulate import _memory_policy, _chip_memory

    policy = _memory_policy(engine_spec("trtllm", _chip_memory("h100-sxm"), 1), None, None, None, (1, 2, 1, False))
    cap = api.deployment("llama-3.1-8b", "h100-sxm", tp=1, pp=2, **policy).memory.kv_capacity_tokens(2048, 16)
    assert r.config["kv_capacity_tokens"] == cap // 32 * 32
