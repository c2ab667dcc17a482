"""The memory ledger: device-reported capacity, each engine's KV policy, and published engine logs."""

from __future__ import annotations

import pytest

from tokenfab import api
from tokenfab.hardware.catalog import load_chip

MIB = 2**20


@pytest.mark.unit
def test_h100_reports_81559_mib():
    assert load_chip("h100-sxm").device_memory_bytes == 81559 * MIB


@pytest.mark.unit
@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_ledger_adds_up_to_capacity(engine):
    r = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", engine=engine, rate=1.0, num_requests=3,
                     input_len=64, output_len=4)
    led = r.config["memory_bytes"]
    parts = (led["weights"] + led["activations"] + led["runtime_buffers"] + led["kv_cache"] + led["driver_and_context"]
             + led["unused"])
    assert parts == pytest.approx(led["capacity"], rel=1e-9)
    assert r.config["kv_capacity_tokens"] * api.deployment("llama-3.1-8b", "h100-sxm").memory.kv_bytes_per_token <= led["kv_cache"] + 1


@pytest.mark.unit
def test_sglang_kv_pool_hand_computed():
    """SGLang: weights + KV pool = mem_fraction_static x device memory, so the pool is 0.88 x 85.52 GB - weights."""
    d = api.deployment("llama-3.1-8b", "h100-sxm", static_memory_frac=0.88)
    expected = (0.88 * 81559 * MIB - d.memory.weights_bytes) / d.memory.kv_bytes_per_token
    assert d.memory.kv_capacity_tokens() == int(expected)


@pytest.mark.unit
def test_sglang_published_log_qwen3_235b_fp8_tp4_h100():
    """github.com/vllm-project/vllm/issues/21348: SGLang, Qwen3-235B-A22B-FP8, 4 x H100, --mem-fraction-static 0.93,
    logged 'KV Cache is allocated. #tokens: 367404'. SGLang applies the fraction to the free memory it reads after
    its CUDA context and distributed init (79.22 - 0.79 - 1.87 GiB), not to nvidia-smi's 79.65 GiB: the ledger gives
    359,024 tokens (-2.3%; 423,084 = +15.2% when the fraction applied to the device-reported total)."""
    r = api.simulate(model="qwen3-235b-a22b", hardware="h100-sxm", tp=4, dtype="fp8", engine="sglang",
                     static_memory_frac=0.93, rate=1.0, num_requests=2, input_len=64, output_len=2)
    assert r.config["kv_capacity_tokens"] == pytest.approx(367_404, rel=0.04)


@pytest.mark.unit
def test_sglang_default_fraction_matches_published_logs():
    """SGLang derives mem_fraction_static from device memory and layout. Two logged values on 80 GB GPUs:
    0.835 at TP 1 with chunked_prefill_size 8192 (SGLang's offline-engine docs page as built by its CI on
    2026-02-05, the PR #10975 heuristic), 0.831 at TP 8 on lmsysorg/sglang:v0.5.2rc2 (the "Grok2 OnPrem
    Deployment via sglang" log of 2025-09-11, the PR #7054 heuristic)."""
    from tokenfab.serving.engines import engine_spec

    mem = load_chip("h100-sxm").device_memory_bytes
    assert engine_spec("sglang", mem, 1).memory.memory_model_kwargs(tp=1)["static_memory_frac"] == 0.835
    assert engine_spec("sglang", mem, 8, "0.5.2").memory.memory_model_kwargs(tp=8)["static_memory_frac"] == 0.831


@pytest.mark.unit
def test_sglang_reserve_hand_computed_with_attention_dp():
    """PR #10975 on B200 (183,359 MiB) at TP 8 with 8 attention-DP ranks: 512 + 16384 x 1.5 + 512 x 2 + 8 x 128
    + 8 x (512 x 3 + 512 x 1.5) MiB = 45,568 MiB, so round(137,791 / 183,359, 3) = 0.751; an EAGLE/MTP draft
    adds 2 GiB."""
    from tokenfab.serving.engines import engine_spec

    mem = load_chip("b200").device_memory_bytes
    assert mem == 183359 * MIB
    pol = engine_spec("sglang", mem, 8).memory
    assert pol.reserve.reserved_bytes(tp=8, dp=8) == 45568 * MIB
    assert pol.memory_model_kwargs(tp=8, dp=8)["static_memory_frac"] == 0.751
    assert pol.memory_model_kwargs(tp=8, dp=8, speculative=True)["static_memory_frac"] == round((183359 - 47616) / 183359, 3)


@pytest.mark.unit
def test_simulate_sizes_sglang_pool_for_its_layout():
    """api.simulate applies the fraction of the run's own layout: TP 2 on H100 reserves 13,568 MiB (0.834)."""
    r = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", tp=2, engine="sglang", rate=1.0, num_requests=2,
                     input_len=64, output_len=2)
    d = api.deployment("llama-3.1-8b", "h100-sxm", tp=2, static_memory_frac=0.834, sizing_base="cuda-total",
                       held_before_sizing_bytes=(79.22 - 78.43 + 1.96 - 0.09) * 2**30)
    assert r.config["kv_capacity_tokens"] == d.memory.kv_capacity_tokens(r.config["max_batched_tokens"], r.config["max_num_seqs"])


@pytest.mark.unit
@pytest.mark.parametrize("engine, version, fragment", [("sglang", "0.4.9", "outside the modelled 0.5.x"),
                                                       ("sglang", "latest", "not of the form"),
                                                       ("vllm", "0.12.0", "models one release"),
                                                       ("trtllm", "0.18", "is not modelled; choose 0.12-0.16")])
def test_engine_version_errors_name_the_choices(engine, version, fragment):
    from tokenfab.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=fragment):
        api.simulate(model="llama-3.1-8b", hardware="h100-sxm", engine=engine, engine_version=version, rate=1.0,
                     num_requests=2, input_len=64, output_len=2)


@pytest.mark.unit
@pytest.mark.parametrize("tp, logged_kv_gib", [(1, 53.29), (2, 71.29 - 7.48 - 3.58 - 1.26)])
def test_vllm_published_profile_meta_llama_3_8b_h100(tp, logged_kv_gib):
    """github.com/vllm-project/vllm/pull/10511 (2024-12-13 sanity checks, `vllm serve meta-llama/Meta-Llama-3-8B`,
    H100, gpu_memory_utilization 0.90): total_gpu_memory 79.22 GiB, weights 14.96 / 7.48 GiB, non_torch_memory 1.79 /
    3.58 GiB, activation peak 1.26 GiB, so 53.29 GiB (TP 1, logged) and 58.97 GiB (TP 2, from its terms) for the KV
    cache. Llama-3-8B has Llama-3.1-8B's layers. The ledger now sizes against CUDA's 79.22 GiB as vLLM does, but it
    models V1 (v0.11-0.18), whose memory snapshot is taken after the CUDA context and the distributed init: those
    are outside its budget, while this V0 (v0.6.5-dev) log charges them as non-torch memory. So the ledger holds
    3.5% (TP 1) and 7.0% (TP 2) more KV than this log (4.5% and 7.9% when it sized against nvidia-smi's 79.65 GiB)."""
    r = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", tp=tp, engine="vllm", rate=1.0, num_requests=2,
                     input_len=64, output_len=2)
    assert r.config["memory_bytes"]["weights"] / 2**30 == pytest.approx(14.96 / tp, rel=0.01)
    assert r.config["memory_bytes"]["kv_cache"] / 2**30 == pytest.approx(logged_kv_gib, rel=0.10)


@pytest.mark.unit
def test_cuda_total_below_device_reported():
    """CUDA's total is what torch-based engines size against: H100 79.22 GiB (vLLM PR #10511 log) under nvidia-smi's
    81,559 MiB; B200 178.35 GiB (pytorch/ao PR #4002) under 183,359 MiB; a chip without a figure falls back."""
    h100, b200, h200 = load_chip("h100-sxm"), load_chip("b200"), load_chip("h200-sxm")
    assert h100.cuda_total_memory_bytes == pytest.approx(79.22 * 2**30, abs=1)
    assert b200.cuda_total_memory_bytes == pytest.approx(178.35 * 2**30, abs=1)
    assert h200.cuda_total_memory_bytes == h200.device_memory_bytes


@pytest.mark.unit
def test_cuda_total_above_device_reported_is_refused():
    from tokenfab.hardware.spec import MemorySpec

    src = {"source": "test", "basis": "measured"}
    with pytest.raises(ValueError, match="cuda_total_bytes"):
        MemorySpec(kind="HBM3", capacity_bytes={"value": 80e9, **src}, device_reported_bytes={"value": 85.5e9, **src},
                   cuda_total_bytes={"value": 86e9, **src}, bandwidth_bytes_per_s={"value": 3.35e12, **src})


@pytest.mark.unit
def test_vllm_budget_hand_computed():
    """vLLM V1: KV = 0.9 x CUDA's total - weights - the profiling run's peak activations - 0.11 GiB non-torch."""
    r = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", engine="vllm", rate=1.0, num_requests=2,
                     input_len=64, output_len=2)
    led, d = r.config["memory_bytes"], api.deployment("llama-3.1-8b", "h100-sxm")
    budget = 0.9 * 79.22 * 2**30 - led["weights"] - led["activations"] - 0.11 * 2**30
    assert led["runtime_buffers"] == pytest.approx(0.11 * 2**30)
    assert r.config["kv_capacity_tokens"] == pytest.approx(budget / d.memory.kv_bytes_per_token, abs=16)
    assert led["driver_and_context"] == pytest.approx((81559 / 1024 - 79.22) * 2**30, rel=1e-6)


@pytest.mark.unit
@pytest.mark.parametrize("tp, held_gib", [(1, 79.22 - 78.43), (2, 79.22 - 78.43 + 1.96 - 0.09)])
def test_sglang_sizes_against_free_memory_at_init(tp, held_gib):
    """SGLang: the pool is mem_fraction_static x (free memory after CUDA context and distributed init) - weights."""
    from tokenfab.serving.engines import engine_spec

    kw = engine_spec("sglang", load_chip("h100-sxm").device_memory_bytes, tp).memory.memory_model_kwargs(tp=tp)
    assert kw["sizing_base"] == "cuda-total"
    assert kw["held_before_sizing_bytes"] == pytest.approx(held_gib * 2**30)
    d = api.deployment("qwen3-32b", "h100-sxm", tp=tp, **kw)
    expected = kw["static_memory_frac"] * (79.22 - held_gib) * 2**30 - d.memory.weights_bytes
    assert d.memory.kv_capacity_tokens() == int(expected / d.memory.kv_bytes_per_token)


@pytest.mark.unit
def test_design_point_capacity_drops_the_base_chips_cuda_total():
    """A swept memory capacity is what the design point's software sees: H100's CUDA total no longer applies."""
    from tokenfab.sweep.knobs import apply_knobs

    chip = apply_knobs(load_chip("h100-sxm"), {"memory.capacity_bytes": 120e9})
    assert chip.device_memory_bytes == 120e9 and chip.cuda_total_memory_bytes == 120e9


@pytest.mark.unit
def test_sglang_free_memory_at_init_b200_tp4_published_log():
    """github.com/sgl-project/sglang/pull/9162 (2025-08-13, DeepSeek-R1-FP4 on 4 x B200): 'Load weight begin. avail
    mem=175.34 GB' (GiB), the free memory SGLang applies mem_fraction_static to. The ledger's figure, derived on H100
    (CUDA's 178.35 GiB total less the 0.79 GiB context and 1.87 GiB multi-GPU init), is 175.69 GiB: within 0.3%."""
    from tokenfab.serving.engines import engine_spec

    kw = engine_spec("sglang", load_chip("b200").device_memory_bytes, 4).memory.memory_model_kwargs(tp=4)
    d = api.deployment("llama-3.1-8b", "b200", tp=4, **kw)
    assert d.memory.sizing_base_bytes / 2**30 == pytest.approx(175.34, rel=0.003)
