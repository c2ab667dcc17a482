import pytest

from tokenfab import api
from tokenfab.errors import InvalidInputError
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.memory import MemoryModel
from tokenfab.hardware.catalog import load_system
from tokenfab.workload.hf_config import load_model
from tokenfab.workload.params import count_parameters

pytestmark = pytest.mark.unit

STABLE_FIELDS = {"ttft_s", "tpot_s", "e2e_s", "prefill_tokens_per_s", "decode_tokens_per_s", "throughput_tokens_per_s",
                 "energy_j_per_token", "fits", "memory_bytes", "breakdown"}


def test_predict_has_the_stable_fields():
    d = api.predict(model="llama-3.1-8b", hardware="h100-sxm", batch=4, input_len=512, output_len=64).to_dict()
    assert STABLE_FIELDS <= set(d)
    assert {"weights", "kv_cache", "activations", "total_per_device", "capacity_per_device"} <= set(d["memory_bytes"])
    assert {"op", "phase", "time_s", "bound", "flops", "bytes"} <= set(d["breakdown"][0])
    assert d["throughput_tokens_per_s"] == pytest.approx(4 * 64 / d["e2e_s"])
    assert d["e2e_s"] == pytest.approx(d["ttft_s"] + 63 * d["tpot_s"])
    assert sum(r["time_s"] for r in d["breakdown"]) == pytest.approx(d["e2e_s"], rel=1e-6)


def test_weights_memory_is_params_times_bytes():
    model = load_model("llama-3.1-8b")
    mem = MemoryModel(model, load_system("h100-sxm", 1), ParallelConfig(), PrecisionConfig())
    assert mem.weights_bytes == pytest.approx(count_parameters(model).total * 2, rel=1e-6)
    # KV per token: 32 layers x 8 kv heads x (128 + 128) x 2 bytes = 131072 bytes
    assert mem.kv_bytes_per_token == 32 * 8 * 256 * 2


def test_tp_splits_weights_and_kv():
    model = load_model("llama-3.1-70b")
    one = MemoryModel(model, load_system("h100-sxm", 1), ParallelConfig(), PrecisionConfig())
    eight = MemoryModel(model, load_system("h100-sxm", 8), ParallelConfig(tp=8), PrecisionConfig())
    assert eight.weights_bytes == pytest.approx(one.weights_bytes / 8, rel=0.01)
    assert eight.kv_bytes_per_token == one.kv_bytes_per_token / 8


def test_int4_weights_quarter_memory():
    d16 = api.predict(model="llama-3.1-8b", hardware="h100-sxm")
    d4 = api.predict(model="llama-3.1-8b", hardware="h100-sxm", weight_dtype="int4")
    assert d4.memory.weights_bytes < 0.4 * d16.memory.weights_bytes
    assert d4.tpot_s < d16.tpot_s


def test_does_not_fit_and_largest_batch():
    r = api.predict(model="llama-3.1-70b", hardware="h100-sxm")
    assert not r.fits and r.max_batch_that_fits == 0
    ok = api.predict(model="llama-3.1-8b", hardware="h100-sxm", batch=8, input_len=1024, output_len=1024)
    too_big = api.predict(model="llama-3.1-8b", hardware="h100-sxm", batch=ok.max_batch_that_fits + 1,
                          input_len=1024, output_len=1024)
    assert ok.fits and not too_big.fits


@pytest.mark.parametrize("kwargs, match", [
    (dict(model="llama-3.1-70b", tp=3, devices=3), "does not divide the 64 attention heads"),
    (dict(model="llama-3.1-8b", ep=2, tp=2), "dense"),
    (dict(model="mixtral-8x7b", tp=2, ep=4, dp=3), "does not divide tp x dp = 6"),
    (dict(model="llama-3.1-8b", devices=6, tp=4), "not a multiple"),
    (dict(model="llama-3.1-8b", devices=12, tp=4), "whole nodes"),
])
def test_impossible_parallelism(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        api.predict(hardware="h100-sxm", **kwargs)


def test_bad_lengths_and_context():
    with pytest.raises(InvalidInputError, match=">= 1"):
        api.predict(input_len=0)
    with pytest.raises(InvalidInputError, match="context"):
        api.predict(model="gpt-j-6b", input_len=2000, output_len=100)


def test_unsupported_dtype_on_int8_only_chip():
    with pytest.raises(InvalidInputError, match="hanguang-800 has no bf16 rate"):
        api.predict(model="llama-2-7b", hardware="hanguang-800")


def test_expert_parallel_shards_experts():
    tp = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=8, ep=1).memory.weights_bytes
    ep = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=8, ep=8).memory.weights_bytes
    assert ep == pytest.approx(tp, rel=0.02)  # same bytes per device, split by expert instead of by column
    r = api.predict(model="deepseek-v3", hardware="h200-sxm", tp=8, ep=8, dtype="fp8", batch=8, input_len=512, output_len=32)
    ops = {row["op"] for row in r.breakdown}
    assert {"moe.experts", "attn.q_absorb"} <= ops
    assert not {"moe.dispatch", "moe.combine"} & ops  # dp = 1: every device already holds every token
    r = api.predict(model="deepseek-v3", hardware="h200-sxm", tp=1, dp=8, ep=8, dtype="fp8", batch=8, input_len=512,
                    output_len=32)
    assert {"moe.dispatch", "moe.combine"} <= {row["op"] for row in r.breakdown}  # attention-DP: tokens move


def test_pipeline_parallel_adds_send_recv():
    r = api.predict(model="llama-3.1-70b", hardware="h100-sxm", tp=4, pp=2, batch=8, input_len=512, output_len=16)
    assert any(row["op"] == "pp_send_recv" for row in r.breakdown)
    assert r.fits


def test_provenance_is_reported():
    assert api.predict(hardware="h20").to_dict()["efficiency_source"] == "inherited"
    assert api.predict(hardware="mi300x").to_dict()["efficiency_source"] == "generic"
    assert api.predict(hardware="h100-sxm").to_dict()["efficiency_source"] == "fitted"


def test_pd_pools_take_their_own_moe_layouts():
    r = api.simulate(model="qwen3-30b-a3b", hardware="h100-sxm", tp=1, dp=2, ep=2, prefill_dp=2, prefill_ep=1,
                     prefill_replicas=1, decode_replicas=1, concurrency=4, num_requests=12, input_len=512, output_len=16)
    cfg = r.config
    assert (cfg["prefill_dp"], cfg["prefill_ep"], cfg["decode_dp"], cfg["decode_ep"]) == (2, 1, 2, 2)
    assert r.summary["completed"] == 12


def test_attention_the_checkpoint_leaves_unconverted_runs_and_is_stored_in_16_bit():
    # GPT-OSS's quantization_config lists self_attn in modules_to_not_convert: its MXFP4 checkpoint
    # quantises only the experts, so at --dtype fp4 the attention projections stay 16-bit GEMMs.
    from tokenfab.execution.layers import LayerCoster, StepBatch
    from tokenfab.execution.config import ParallelConfig, PrecisionConfig
    from tokenfab.cost.chip_cost import chip_cost
    from tokenfab.hardware.catalog import load_chip, load_system
    from tokenfab.workload.hf_config import load_model

    model = load_model("gpt-oss-120b")
    group = model.layers[0]
    assert not group.attention.weights_quantized and load_model("deepseek-v3").layers[0].attention.weights_quantized
    cc = chip_cost(load_chip("b200"))
    coster = LayerCoster(cc, load_system("b200", 8), ParallelConfig(tp=8), PrecisionConfig(dtype="fp4"), model.hidden_size)
    quantized = group.attention.model_copy(update={"weights_quantized": True})
    ops = {c.op: c for c in coster.attention_ops(group.attention, StepBatch(num_decode=4, decode_kv_len=1024.0))}
    fp4 = {c.op: c for c in coster.attention_ops(quantized, StepBatch(num_decode=4, decode_kv_len=1024.0))}
    assert ops["attn.qkv_proj"].bytes == pytest.approx(4 * fp4["attn.qkv_proj"].bytes, rel=0.05)  # 2 bytes vs 0.5 per weight
    assert ops["attn.qkv_proj"].source == fp4["attn.qkv_proj"].source  # same chip profile, another format kind
    # stored in 16-bit too: the weights differ by the attention parameters x (2 - 4.25 / 8) bytes (GPT-OSS's
    # config names MXFP4: 4 bits plus an E8M0 scale per 32 weights)
    from tokenfab.workload.params import attention_params
    layers = tuple(g.model_copy(update={"attention": quantized}) for g in model.layers)
    all_fp4 = model.model_copy(update={"layers": layers})
    system, par, prec = load_system("b200", 1), ParallelConfig(), PrecisionConfig(dtype="fp4")
    extra = MemoryModel(model, system, par, prec).weights_bytes - MemoryModel(all_fp4, system, par, prec).weights_bytes
    assert extra == pytest.approx(model.num_layers * attention_params(group.attention, model.hidden_size) * (2 - 4.25 / 8))


def test_attention_dp_rank_prefilling_alone_charges_the_experts_its_own_prompt_plus_every_ranks_decodes():
    """Serving (staggered prefill): one rank's 2,048-token prompt beside 4 decodes per rank on 8 ranks reaches the
    experts as 2,048 + 8 x 4 tokens; a static batch (all ranks prefill at once) as 8 x (2,048 + 4)."""
    from tokenfab.execution.layers import StepBatch, expert_group_tokens

    batch = StepBatch(prefill=((1, 2048, 2048),), num_decode=4, decode_kv_len=1000.0)
    assert expert_group_tokens(batch, 8, staggered_prefill=True) == 2048 + 8 * 4
    assert expert_group_tokens(batch, 8, staggered_prefill=False) == 8 * 2052
    decode_only = StepBatch(num_decode=4, decode_kv_len=1000.0)
    assert expert_group_tokens(decode_only, 8, True) == expert_group_tokens(decode_only, 8, False) == 32
    assert expert_group_tokens(batch, 1, True) == expert_group_tokens(batch, 1, False) == batch.num_tokens


def test_serving_step_of_an_attention_dp_rank_costs_experts_on_the_group_tokens():
    from tokenfab.execution.layers import StepBatch

    kw = dict(tp=1, dp=8, ep=8, dtype="fp8")
    static = api.deployment("deepseek-v3", "h200-sxm", **kw).step_model
    serving = api.deployment("deepseek-v3", "h200-sxm", staggered_prefill=True, **kw).step_model
    prefill = StepBatch(prefill=((1, 2048, 2048),), num_decode=4, decode_kv_len=1000.0)
    decode = StepBatch(num_decode=4, decode_kv_len=1000.0)
    experts = {name: sm.step(prefill).breakdown["moe.experts"] for name, sm in (("static", static), ("serving", serving))}
    assert experts["serving"].flops == pytest.approx(experts["static"].flops * (2048 + 32) / (8 * 2052), rel=0.05)
    assert serving.step(decode).time_s == static.step(decode).time_s
    assert serving.fast_step(prefill.prefill, 4, 1000.0)[0] == pytest.approx(serving.step(prefill).time_s)


def test_normal_dispatch_sends_fp8_rows_when_the_experts_run_fp8():
    """DeepSeek-V3, tp 1 x dp 8, EP 8, 64 tokens per rank: each token reaches 8 x (1 - (7/8)^8) expert groups;
    FP8 experts are sent one byte plus a 4-byte scale per 128 elements, bf16 experts two bytes; combine 16-bit."""
    from tokenfab.execution.layers import FP8_DISPATCH_BYTES

    rows = 64 * 8 * (1 - (7 / 8) ** 8)
    for dtype, width in (("fp8", FP8_DISPATCH_BYTES), ("bf16", 2.0)):
        sm = api.deployment("deepseek-v3", "h200-sxm", tp=1, dp=8, ep=8, dtype=dtype).step_model
        dispatch, combine = sm.coster.token_exchange(sm.model.layers[-1].ffn, 64)
        # an all-to-all's bytes are those leaving each device: 7/8 of its send buffer on 8 devices
        assert dispatch.bytes == pytest.approx(rows * 7168 * width * 7 / 8)
        assert combine.bytes == pytest.approx(rows * 7168 * 2.0 * 7 / 8)


def test_allgather_exchange_moves_every_ranks_tokens_once_in_nvfp4():
    """TensorRT-LLM's exchange without MNNVL/DeepEP: all-gather of all ranks' tokens (NVFP4: 0.5 byte plus an FP8
    scale per 16 elements) and a 16-bit reduce-scatter, sized by the tokens all ranks route (serving: one rank's
    2,048-token prompt plus 8 x 4 decodes)."""
    from tokenfab.execution.layers import FP4_GATHER_BYTES, StepBatch

    sm = api.deployment("deepseek-v3", "b200", tp=1, dp=8, ep=8, dtype="fp4", moe_dispatch="allgather",
                        staggered_prefill=True).step_model
    ffn = sm.model.layers[-1].ffn
    gather, scatter = sm.coster.token_exchange(ffn, 2052, 2048 + 8 * 4)
    assert gather.bytes == pytest.approx((2048 + 32) * 7168 * FP4_GATHER_BYTES * 7 / 8)
    assert scatter.bytes == pytest.approx((2048 + 32) * 7168 * 2.0 * 7 / 8)
    step = sm.step(StepBatch(prefill=((1, 2048, 2048),), num_decode=4, decode_kv_len=1000.0)).breakdown
    assert step["moe.dispatch"].bytes == pytest.approx(gather.bytes * ffn_layers(sm))


def ffn_layers(sm) -> float:
    return sum(g.num_layers for g in sm.model.layers if g.ffn.kind != "dense")


def test_model_steps_route_tokens_independently_so_small_batches_read_fewer_experts():
    """GPT-OSS-120B on one B200, a 32-token decode step: 128 top-4 picks over 128 experts. Round-robin ('balanced')
    gives each pick its own expert (all 128 read); independent routing expects 128 x (1 - (1 - 4/128)^32) = 81.7
    distinct experts, and the same 128 rows, so the steps differ by the weights of 46.3 experts exactly."""
    from tokenfab.execution.layers import LayerCoster
    from tokenfab.execution.moe_routing import model_routing
    from tokenfab.units import bytes_per_element

    sm = api.deployment("gpt-oss-120b", "b200", tp=1, dtype="fp4").step_model
    ffn = sm.model.layers[-1].ffn
    balanced, uniform = (LayerCoster(sm.cc, sm.system, sm.par, sm.prec, sm.model.hidden_size) for _ in range(2))
    balanced.routing, uniform.routing = "balanced", "uniform"
    # the model family's routing (execution.moe_routing: uniform or the skew fitted for gpt_oss)
    assert sm.coster.routing == sm.graph_coster.routing == model_routing("gpt_oss")
    # the checkpoint's experts are MXFP4: 4 bits plus one 8-bit scale per 32 weights (workload/weight_formats.yaml)
    assert sm.coster.expert_weight_bytes == pytest.approx((4 + 8 / 32) / 8)
    balanced.expert_weight_bytes = uniform.expert_weight_bytes = sm.coster.expert_weight_bytes
    uniform_cost, balanced_cost = uniform.routed_experts(ffn, 32), balanced.routed_experts(ffn, 32)
    active = 128 * (1 - (1 - 4 / 128) ** 32)
    per_expert = (2880 * 2 * 2880 + 2880 * 2880) * bytes_per_element("fp4") * 4.25 / 4
    assert active == pytest.approx(81.66, abs=0.01)
    assert balanced_cost.bytes - uniform_cost.bytes == pytest.approx((128 - active) * per_expert)
    assert uniform_cost.flops == pytest.approx(balanced_cost.flops)  # the same 128 token-expert rows
    assert uniform_cost.time_s < balanced_cost.time_s
