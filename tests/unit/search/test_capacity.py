"""The steady-state capacity function: SLO boundary, KV bound, refusals, plan's provider."""

import pytest

from tokenfab import api
from tokenfab.errors import DoesNotFitError, InvalidInputError
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.search.capacity import (EngineLimits, IterationTimes, _poisson, estimate_capacity, estimate_steady_state,
                                      max_batch_for)
from tokenfab.search.plan_capacity import limits_for
from tokenfab.serving.engines import DEFAULT_ENGINE

pytestmark = pytest.mark.unit


def test_best_batch_is_the_largest_meeting_the_tpot_target():
    d = api.deployment("llama-3.1-8b", "h100-sxm")
    lim = EngineLimits()
    r = estimate_capacity(d.step_model, d.memory, 1024, 256, ttft_s=2.0, tpot_s=0.02, limits=lim, closed_loop=True)
    b = r.state.batch
    assert r.state.tpot_s <= 0.02
    assert estimate_steady_state(d.step_model, b + 1, 1024, 256, lim, 0.0).tpot_at(99.0, 256) > 0.02
    assert estimate_steady_state(d.step_model, b, 1024, 256, lim, 0.0).tpot_at(99.0, 256) == r.state.tpot_s
    assert r.tokens_per_s_per_chip == pytest.approx(r.state.tokens_per_s)  # one device


def test_open_loop_capacity_leaves_room_for_the_poisson_tail():
    """At the 99th percentile a Poisson batch of mean B runs B + ~2.3 sqrt(B) sequences: the open-loop
    batch is smaller than the closed-loop one, and its reported TPOT is the tail's, within the target."""
    from tokenfab.search.capacity import tail_batch

    d = api.deployment("llama-3.1-8b", "h100-sxm")
    closed = estimate_capacity(d.step_model, d.memory, 1024, 256, 2.0, 0.02, closed_loop=True)
    open_ = estimate_capacity(d.step_model, d.memory, 1024, 256, 2.0, 0.02, percentile=99.0)
    assert open_.state.batch < closed.state.batch
    assert tail_batch(open_.state.batch, 99.0) <= closed.state.batch
    assert open_.state.tpot_s <= 0.02
    assert tail_batch(100, 99.0) == 124  # scipy.stats.poisson.ppf(0.99, 100)


def test_single_sequence_steady_state_is_decode_plus_one_prefill_per_output():
    """B = 1: each request is one prefill iteration then O - 1 decode iterations, one at a time."""
    d = api.deployment("llama-3.1-8b", "h100-sxm")
    I, O = 512, 64
    s = estimate_steady_state(d.step_model, 1, I, O, EngineLimits(), 0.0)
    prefill = api.step("llama-3.1-8b", "h100-sxm", phase="prefill", context_len=I).time_s
    # d = (O-1)/O decoders on average, c = 1/O completions per iteration
    assert s.requests_per_s * O == pytest.approx(s.tokens_per_s)
    assert s.num_decode == pytest.approx((O - 1) / O)
    cycle = O / s.tokens_per_s  # time per request
    decode = api.step("llama-3.1-8b", "h100-sxm", batch=1, context_len=I + O // 2).time_s
    assert cycle == pytest.approx(prefill + (O - 1) * decode, rel=0.03)


def test_kv_cache_bounds_the_batch():
    d = api.deployment("llama-3.1-70b", "h100-sxm", None, 4)
    lim = EngineLimits(max_num_seqs=4096)
    top = max_batch_for(d.memory, 8000, 2000, lim)
    cap = d.memory.kv_capacity_tokens(lim.max_num_batched_tokens, lim.max_num_seqs)
    assert top * (8000 + 1000) <= cap < (top + 2) * (8000 + 1000 + 8)
    assert max_batch_for(d.memory, 1024, 256, EngineLimits(max_num_seqs=7)) == 7


def test_refusals():
    d = api.deployment("llama-3.1-8b", "h100-sxm")
    with pytest.raises(DoesNotFitError, match="even one sequence"):
        estimate_capacity(d.step_model, d.memory, 1024, 256, ttft_s=2.0, tpot_s=1e-4)
    with pytest.raises(InvalidInputError, match="at least 2 tokens"):
        estimate_steady_state(d.step_model, 4, 1024, 1, EngineLimits())


def test_poisson_weights_sum_to_one_with_the_right_mean():
    w = _poisson(2.5)
    assert sum(p for _, p in w) == pytest.approx(1.0)
    assert sum(n * p for n, p in w) == pytest.approx(2.5, rel=1e-3)


def test_plan_provider_uses_the_search_capacity():
    slo = SLOSpec(ttft_ms=2000, tpot_ms=50, input_tokens=1024, output_tokens=256)
    est = api.predicted_capacity("h100-sxm", "llama-3.1-8b", slo)
    assert "tokenfab search capacity" in est.source
    d = api.deployment("llama-3.1-8b", "h100-sxm")
    limits = limits_for(DEFAULT_ENGINE, "h100-sxm", 1)  # the plan's engine, with its fitted host time per step
    direct = estimate_capacity(d.step_model, d.memory, 1024, 256, 2.0, 0.05, limits)
    assert est.tokens_per_s_per_chip >= direct.tokens_per_s_per_chip * 0.999  # tp1 is among the TP degrees tried


def test_capacity_on_a_chip_spec_equals_the_catalog_provider():
    """A design sweep holding a ChipSpec gets the very figure plan gets for the catalog chip."""
    from tokenfab.hardware.catalog import load_chip
    from tokenfab.search.plan_capacity import capacity_on_chip, capacity_per_chip
    from tokenfab.workload.hf_config import load_model

    r, tp = capacity_on_chip(load_chip("h20"), load_model("qwen3-8b"), 2.0, 0.05, 1024, 256)
    tokens, power, source, (low, high) = capacity_per_chip("h20", "qwen3-8b", 2.0, 0.05, 1024, 256)
    assert (r.tokens_per_s_per_chip, r.power_w_per_chip) == (tokens, power)
    assert f"tp{tp} " in source
    assert low < tokens < high  # the capacity's error band (docs/bands.md)
    d = r.to_dict()
    assert d["tokens_per_s_per_chip_lo"] == pytest.approx(low) and d["tokens_per_s_per_chip_hi"] == pytest.approx(high)
    assert d["tpot_s_lo"] < d["tpot_s"] < d["tpot_s_hi"] and d["band_level"] == 0.9


@pytest.mark.unit
def test_padded_decode_rows_widen_the_batch_not_the_kv_reads():
    """A decode-only batch of 5 padded to the captured size 8: the step of 8 rows whose KV tokens are the 5 real
    sequences' (5 x 1000 spread over 8 rows = 625 each), plus the host overhead; CUDA-graph padding rows are dummies."""
    from tokenfab.execution.layers import StepBatch
    from tokenfab.search.capacity import IterationTimes

    d = api.deployment("llama-3.1-8b", "h100-sxm", None, 1, 1)
    t, _ = IterationTimes(d.step_model, EngineLimits(cuda_graph_sizes=(8,), step_overhead_s=1e-4))._one((), 5, 1000.0)
    assert t == pytest.approx(d.step_model.step(StepBatch((), 8, 625.0)).time_s + 1e-4, rel=1e-12)
    assert t < d.step_model.step(StepBatch((), 8, 1000.0)).time_s + 1e-4


def test_prompt_only_iterations_take_the_prefill_host_time():
    # Issue 9 item 1: the capacity steady state times a prefill-first engine's prompt-only iteration as the replica
    # does, step plus step overhead plus `prefill_overhead_s`; decode iterations keep the step overhead alone.
    d = api.deployment("llama-3.1-8b", "h100-sxm", None, 1)
    base = EngineLimits(prefill_first=True, step_overhead_s=1e-4)
    slow = EngineLimits(prefill_first=True, step_overhead_s=1e-4, prefill_overhead_s=0.05)
    prompt = ((1, 1024, 1024),)
    t0, _ = IterationTimes(d.step_model, base).prompt_only(prompt)
    t1, _ = IterationTimes(d.step_model, slow).prompt_only(prompt)
    assert t1 - t0 == pytest.approx(0.05, rel=1e-9)
    assert IterationTimes(d.step_model, slow).at((), 8, 1000.0) == IterationTimes(d.step_model, base).at((), 8, 1000.0)
    # one client: each request's cycle is one prompt-only iteration and O - 1 decodes, so 50 ms more per request
    # lengthens the TTFT by 50 ms and the request cycle by as much
    s0 = estimate_steady_state(d.step_model, 1, 1024, 64, base, 0.0)
    s1 = estimate_steady_state(d.step_model, 1, 1024, 64, slow, 0.0)
    assert s1.ttft_s - s0.ttft_s == pytest.approx(0.05, rel=1e-6)
    assert 1 / s1.requests_per_s - 1 / s0.requests_per_s == pytest.approx(0.05, rel=0.02)


def test_limits_for_a_model_take_its_class_fit(monkeypatch):
    from tokenfab.serving import engines

    monkeypatch.setattr(engines, "fitted_overheads",
                        lambda: {"sglang": {"architectures": {"mla-moe": {"prefill_overhead_s": 0.1}}}})
    monkeypatch.setattr(engines, "fitted_prefill_overheads", lambda: {})  # no per-layer fit (which would supersede it)
    assert limits_for("sglang", "b200", 8, model="deepseek-v3").prefill_overhead_s == 0.1
    monkeypatch.setattr(engines, "fitted_prefill_overheads", lambda: {"sglang": {"mla-moe": 0.001}})
    assert limits_for("sglang", "b200", 8, model="deepseek-v3").prefill_overhead_s == pytest.approx(0.061)  # 61 layers
    assert limits_for("sglang", "b200", 8, model="llama-3.1-8b").prefill_overhead_s == 0.0
    assert limits_for("sglang", "b200", 8).prefill_overhead_s == 0.0  # no model: the engine's own fields only


def test_mixed_iterations_take_the_eager_host_time_once_added_or_beside_the_kernels():
    # Issue 9 item 1: an iteration mixing decodes with a prompt chunk (TensorRT-LLM's context iterations) pays the
    # eager host time as `serving.replica` charges it (`serving.eager`): 50 ms added to the kernels; beside them,
    # the longer of the two (here the kernels of one 1024-token chunk and 8 decodes take k < 50 ms, so 50 ms - k).
    d = api.deployment("llama-3.1-8b", "h100-sxm", None, 1)
    base = IterationTimes(d.step_model, EngineLimits(step_overhead_s=1e-4))
    added = IterationTimes(d.step_model, EngineLimits(step_overhead_s=1e-4, prefill_overhead_s=0.05))
    beside = IterationTimes(d.step_model, EngineLimits(step_overhead_s=1e-4, prefill_overhead_s=0.05,
                                                       prefill_overhead_overlaps=True))
    prompt = ((1, 1024, 1024),)
    t0, e0 = base.at(prompt, 8, 1000.0)
    kernels = t0 - 1e-4
    assert kernels < 0.05
    t1, e1 = added.at(prompt, 8, 1000.0)
    assert t1 - t0 == pytest.approx(0.05, rel=1e-9)
    assert e1 - e0 == pytest.approx(0.05 * d.step_model.system.chip.power.idle_w.value, rel=1e-9)  # the device idles
    assert beside.at(prompt, 8, 1000.0)[0] == pytest.approx(0.05 + 1e-4, rel=1e-9)
    assert added.at((), 8, 1000.0) == base.at((), 8, 1000.0)  # decode-only iterations replay graphs: untouched
