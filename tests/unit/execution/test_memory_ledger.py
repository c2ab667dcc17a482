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
    parts = led["weights"] + led["activations"] + led["kv_cache"] + led["unused"]
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
    logged 'KV Cache is allocated. #tokens: 367404'. The ledger has no term for the CUDA context, NCCL and cuBLAS
    buffers SGLang holds before sizing the pool (about 2.7 GB here), so it over-counts by about 15%."""
    r = api.simulate(model="qwen3-235b-a22b", hardware="h100-sxm", tp=4, dtype="fp8", engine="sglang",
                     static_memory_frac=0.93, rate=1.0, num_requests=2, input_len=64, output_len=2)
    assert r.config["kv_capacity_tokens"] == pytest.approx(367_404, rel=0.20)


@pytest.mark.unit
def test_sglang_default_fraction_matches_published_logs():
    """SGLang derives mem_fraction_static from device memory and layout. Two logged values on 80 GB GPUs:
    0.835 at TP 1 with chunked_prefill_size 8192 (SGLang's offline-engine docs page as built by its CI on
    2026-02-05, the PR #10975 heuristic), 0.831 at TP 8 on lmsysorg/sglang:v0.5.2rc2 (the "Grok2 OnPrem
    Deployment via sglang" log of 2025-09-11, the PR #7054 heuristic)."""
    from tokenfab.serving.engines import engine_spec

    mem = load_chip("h100-sxm").device_memory_bytes
    assert engine_spec("sglang", mem, 1).memory.memory_model_kwargs(tp=1) == {"static_memory_frac": 0.835}
    assert engine_spec("sglang", mem, 8, "0.5.2").memory.memory_model_kwargs(tp=8) == {"static_memory_frac": 0.831}


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
    assert pol.memory_model_kwargs(tp=8, dp=8) == {"static_memory_frac": 0.751}
    assert pol.memory_model_kwargs(tp=8, dp=8, speculative=True) == {"static_memory_frac": round((183359 - 47616) / 183359, 3)}


@pytest.mark.unit
def test_simulate_sizes_sglang_pool_for_its_layout():
    """api.simulate applies the fraction of the run's own layout: TP 2 on H100 reserves 13,568 MiB (0.834)."""
    r = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", tp=2, engine="sglang", rate=1.0, num_requests=2,
                     input_len=64, output_len=2)
    d = api.deployment("llama-3.1-8b", "h100-sxm", tp=2, static_memory_frac=0.834)
    assert r.config["kv_capacity_tokens"] == d.memory.kv_capacity_tokens(r.config["max_batched_tokens"], r.config["max_num_seqs"])


@pytest.mark.unit
@pytest.mark.parametrize("engine, version, fragment", [("sglang", "0.4.9", "outside the modelled 0.5.x"),
                                                       ("sglang", "latest", "not of the form"),
                                                       ("trtllm", "1.0", "models one release")])
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
    cache. Llama-3-8B has Llama-3.1-8B's layers. The ledger has the weights and activations but no term for the
    non-torch memory (CUDA context, cuBLAS and NCCL buffers) and sizes the device from nvidia-smi's 79.65 GiB rather
    than CUDA's 79.22 GiB, so it holds 4.5% (TP 1) and 7.9% (TP 2) more KV than vLLM logged."""
    r = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", tp=tp, engine="vllm", rate=1.0, num_requests=2,
                     input_len=64, output_len=2)
    assert r.config["memory_bytes"]["weights"] / 2**30 == pytest.approx(14.96 / tp, rel=0.01)
    assert r.config["memory_bytes"]["kv_cache"] / 2**30 == pytest.approx(logged_kv_gib, rel=0.10)
