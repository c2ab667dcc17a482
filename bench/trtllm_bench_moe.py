"""trtllm-bench's engine limits for an MoE row of trtllm.csv, as trtllm-bench derives them (bench/accuracy_moe_serving.py).

trtllm-bench's PyTorch backend sets max_batch_size and max_num_tokens, when the command line gives neither, from its
own estimate of the KV room (tensorrt_llm/bench/benchmark/utils/general.py get_settings -> bench/build/build.py
get_benchmark_engine_settings -> bench/build/tuning.py calc_engine_setting + finetune_setting):

- only for the quantisation algorithms it tunes (TUNED_QUANTS: NVFP4, FP8, FP8_BLOCK_SCALES, no quantisation); any
  other checkpoint (GPT-OSS's MXFP4: W4A16_MXFP4 / W4A8_MXFP4_*) gets BuildConfig's defaults, max_batch_size 2048 and
  max_num_tokens 8192;
- the room is NVML's device total x TP x PP (`--tp` is the whole attention group: TensorRT-LLM's DEP4 is --tp 4 --ep 4
  with enable_attention_dp), less the checkpoint's safetensors parameter count x BYTES_PER_ELEM of its quantisation
  (2 / 1 / 0.5), x kv_cache_free_gpu_mem_fraction (0.90 by default, the row's 0.95 where its notes say so);
- a token costs 2 x layers x max(TP, num_key_value_heads) x head_size x KV bytes, read from the HF config as
  bench/build/dataclasses.py ModelConfig does: num_key_value_heads (else the attention heads) and head_dim (else
  hidden_size / heads). It knows neither MLA nor attention-DP: DeepSeek-V3's config states 128 KV heads and no head_dim,
  so the estimate charges 2 x 61 x 128 x 56 bytes per token where the absorbed MLA cache holds 61 x 576;
- finetune_setting rounds requests = room / (token cost x (ISL + OSL)) up to max_batch_size and max_num_tokens.

The engine applies both limits per attention-DP rank (each rank's executor schedules its own batch), so they are the
simulated rank's max_num_seqs and max_batched_tokens. Chunked prefill is off (get_settings: enable_chunked_prefill
False), so max_num_tokens is raised to ISL + max_batch_size. CUDA graphs are the perf overviews' capture list
(`accuracy_serving.PERF_OVERVIEW_CUDA_GRAPH_BATCH_SIZES`): the llm_options.yml the developer-guide perf overview gives
for every MoE model it lists (GPT-OSS, DeepSeek-R1, 'Qwen3 MoE, Llama4 Maverick') set cuda_graph_config
enable_padding: true, batch_sizes: [1, 2, 4, ..., 256, 384, 512, 1024, 2048, 4096, 8192]
(docs/source/developer-guide/perf-overview.md, "Reproducing Benchmarked Results"), and the v1.0-era rows' notes say
"CUDA graph batch sizes up to 8192". The engine keeps the sizes not above the largest pure-decode batch,
min(max_batch_size, max_num_tokens), and with padding on adds that batch itself when the list holds a larger size
("padding to max_cuda_graph_bs is acceptable": _torch/pyexecutor/model_engine.py _filter_cuda_graph_batch_sizes,
1.0-1.2), so a decode batch pads up to the next kept size (`captured_list`). Before, these rows took the list
CudaGraphConfig generates from max_batch_size, which pads more coarsely below it.

The safetensors count of an NVFP4 checkpoint counts each packed byte (two E2M1 weights) once and each FP8 block scale
(one per 16 weights) once (workload/weight_formats.yaml nvfp4); an FP8 checkpoint one element per weight. Every
linear weight but the embedding, LM head and routers is counted as quantised (the published NVIDIA checkpoints may
keep attention in 16 bit; a few percent of these models' parameters).
"""

from __future__ import annotations

import json

from accuracy_serving import GIB, PERF_OVERVIEW_CUDA_GRAPH_BATCH_SIZES, _finetune_setting

from tokenfab.hardware.catalog import load_chip
from tokenfab.workload.hf_config import CONFIG_DIR, load_model
from tokenfab.workload.params import count_parameters

TUNED_BYTES_PER_ELEM = {"fp4": 0.5, "fp8": 1.0, "bf16": 2.0, "fp16": 2.0}  # tuning.py BYTES_PER_ELEM by quant algo
UNTUNED_LIMITS = (2048, 8192)  # BuildConfig.max_batch_size, max_num_tokens: a quantisation trtllm-bench does not tune
DEFAULT_KV_FRACTION = 0.90  # trtllm-bench throughput --kv_cache_free_gpu_mem_fraction default
NVFP4_STORED_PER_WEIGHT = 0.5 + 1.0 / 16.0  # a packed byte per two weights, an FP8 scale per 16


def _hf_config(model: str) -> dict:
    config = json.loads((CONFIG_DIR / f"{model}.json").read_text())
    return config.get("text_config", config)


def checkpoint_quant_method(model: str) -> str | None:
    """The quant_method a bundled model's config.json states (GPT-OSS: 'mxfp4'), None for an unquantised config."""
    return (_hf_config(model).get("quantization_config") or {}).get("quant_method")


def checkpoint_elements(model: str, dtype: str) -> float:
    """The checkpoint's safetensors parameter count (see the module docstring)."""
    p = count_parameters(load_model(model))
    unquantised = p.embedding + p.lm_head + p.norms
    quantised = p.total - unquantised
    return quantised * (NVFP4_STORED_PER_WEIGHT if dtype == "fp4" else 1.0) + unquantised


def bench_kv_requests(kw: dict, bench_tp: int) -> float:
    """Requests of ISL + OSL tokens trtllm-bench's estimate fits (tuning.py calc_engine_setting)."""
    cfg, pp = _hf_config(kw["model"]), kw["pp"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_size = cfg.get("head_dim") or cfg["hidden_size"] // heads
    kv_bytes = 1.0 if kw["kv_dtype"] == "fp8" else 2.0
    per_token_gib = 2 * cfg["num_hidden_layers"] * max(bench_tp, kv_heads) * head_size * kv_bytes / GIB
    total_gib = load_chip(kw["hardware"]).device_memory_bytes / GIB * bench_tp * pp
    weights_gib = checkpoint_elements(kw["model"], kw["dtype"]) * TUNED_BYTES_PER_ELEM[kw["dtype"]] / GIB
    fraction = kw.get("kv_free_memory_frac", DEFAULT_KV_FRACTION)
    return (total_gib - weights_gib) * fraction / per_token_gib / (kw["input_len"] + kw["output_len"])


def trtllm_bench_moe_limits(kw: dict, tuned: bool = True) -> dict:
    """max_num_seqs, max_batched_tokens and cuda_graph_batch_sizes of one attention-DP rank for a PyTorch-backend
    trtllm-bench MoE row (`kw`: its simulate arguments); `tuned` False for a checkpoint whose quantisation
    trtllm-bench does not tune (BuildConfig defaults)."""
    if tuned:
        bench_tp = kw["tp"] * kw.get("dp", 1)  # trtllm-bench's --tp: the attention group, attention-DP or not
        bs, tok = _finetune_setting(bench_kv_requests(kw, bench_tp), kw["input_len"], kw["output_len"], kw["pp"])
    else:
        bs, tok = UNTUNED_LIMITS
    tok = max(tok, kw["input_len"] + bs)
    return {"max_num_seqs": bs, "max_batched_tokens": tok, "cuda_graph_batch_sizes": captured_list(bs, tok)}


def captured_list(max_batch_size: int, max_num_tokens: int) -> tuple[int, ...]:
    """The CUDA-graph batch sizes a PyTorch-backend engine captures from the perf overviews' list with padding on
    (model_engine.py _filter_cuda_graph_batch_sizes): the sizes up to the largest pure-decode batch, and that batch
    itself where the list goes beyond it."""
    top = min(max_batch_size, max_num_tokens)
    kept = tuple(s for s in PERF_OVERVIEW_CUDA_GRAPH_BATCH_SIZES if s <= top)
    return kept if top in kept or top > PERF_OVERVIEW_CUDA_GRAPH_BATCH_SIZES[-1] else (*kept, top)
