"""Serving engines as they schedule: one module per engine behind a small policy protocol.

An engine decides, per iteration, how the replica composes its batch: the token budget and
sequence limit, whether long prompts are chunked (and the chunk size), whether waiting prompts
run together with decodes or pause them (prefill-first), which decode batch sizes run as
captured CUDA graphs (a batch is padded up to the next captured size), the host time each
iteration costs beyond the kernels, what happens when the KV cache is full (preempt and
recompute, or admit only what is guaranteed to finish), and how device memory is divided
(the memory policy the engine's KV-cache sizing follows).

Adding an engine is one module that builds an `EngineSpec` and one `@register_engine` line.
Defaults are those of the engine's documentation or source at the cited version; the per-step
host overhead is fitted on measured serving runs (`serving/engines/overheads.yaml`, written by
`python bench/fit_engine_overheads.py`) and is 0 for an engine without a fit.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tokenfab.registry import Registry

DEFAULT_ENGINE = "vllm"
OVERHEADS_PATH = Path(__file__).with_name("overheads.yaml")


class MemoryPolicy(BaseModel):
    """How an engine sizes its KV cache from device memory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["device-fraction", "static-fraction", "free-fraction"] = Field(
        description="device-fraction: the whole process (weights, activations, graphs, KV) stays under `fraction` of the "
                    "device (vLLM gpu_memory_utilization); static-fraction: weights plus KV pool take `fraction` "
                    "(SGLang mem_fraction_static); free-fraction: KV gets `fraction` of what is free after loading "
                    "(TensorRT-LLM free_gpu_memory_fraction).")
    fraction: float = Field(gt=0, le=1, description="The engine's fraction (see kind).")
    cuda_graph_bytes: float = Field(default=0.0, ge=0, description="Memory held by captured CUDA graphs, per device.")
    source: str = Field(min_length=1, description="Where the default comes from.")

    def memory_model_kwargs(self) -> dict[str, float]:
        """The `MemoryModel` / `deployment()` keyword that applies this policy."""
        key = {"device-fraction": "memory_utilization_frac", "free-fraction": "kv_free_memory_frac",
               "static-fraction": "static_memory_frac"}[self.kind]
        return {key: self.fraction}


class EngineSpec(BaseModel):
    """One serving engine's scheduling and memory behaviour (defaults per its docs/source)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str = Field(description="Engine version whose defaults these are.")
    max_num_seqs: int = Field(ge=1, description="Most running sequences (vLLM max_num_seqs, TRT-LLM max_batch_size).")
    max_num_batched_tokens: int = Field(ge=1, description="Token budget of one iteration (prefill + decode tokens).")
    chunked_prefill: bool = Field(description="Long prompts split over iterations.")
    prefill_chunk_tokens: int | None = Field(default=None, ge=1, description="Largest prefill chunk (SGLang chunked_prefill_size); None: the budget.")
    prefill_first: bool = Field(default=False, description="Waiting prompts run in their own iteration, pausing decodes (SGLang default), instead of sharing it.")
    cuda_graph_sizes: tuple[int, ...] = Field(default=(), description="Captured decode batch sizes; a decode-only batch is padded up to the next one.")
    step_overhead_s: float = Field(default=0.0, ge=0, description="Host time per iteration beyond the kernels (fitted; see overheads.yaml).")
    frontend_s: float = Field(default=0.0, ge=0, description="Serial front-end time per request (HTTP, detokenising, "
                                                             "scheduling handoff) in the single-threaded API server (fitted).")
    frontend_s_per_token: float = Field(default=0.0, ge=0, description="Serial front-end time per prompt token (tokenisation; fitted).")
    kv_full: Literal["preempt", "reserve"] = Field(
        default="preempt", description="preempt: admit on current need, preempt (recompute) when blocks run out; reserve: admit only "
                                       "requests whose whole output fits (TensorRT-LLM GUARANTEED_NO_EVICT).")
    block_tokens: int = Field(default=16, ge=1, description="Tokens per KV block.")
    memory: MemoryPolicy
    source: str = Field(min_length=1, description="Docs/source the defaults come from, with version.")

    def padded_decode(self, num_decode: int) -> int:
        """Decode batch size actually run: the next captured CUDA-graph size, or itself past the largest."""
        sizes = self.cuda_graph_sizes
        if not sizes or num_decode > sizes[-1]:
            return num_decode
        return sizes[bisect.bisect_left(sizes, num_decode)]


EngineFactory = Callable[[float, int], EngineSpec]  # (device memory bytes, tp) -> spec
ENGINES: Registry[EngineFactory] = Registry("engine")
register_engine = ENGINES.register


FITTED_FIELDS = ("step_overhead_s", "frontend_s", "frontend_s_per_token")


@functools.lru_cache(maxsize=1)
def fitted_overheads() -> dict[str, dict[str, float]]:
    """Per-engine fitted host overheads (seconds; empty without the data file)."""
    if not OVERHEADS_PATH.exists():
        return {}
    data = yaml.safe_load(OVERHEADS_PATH.read_text()) or {}
    return {name: {k: float(v[k]) for k in FITTED_FIELDS if k in v} for name, v in data.get("engines", {}).items()}


def engine_spec(name: str, device_memory_bytes: float, tp: int = 1) -> EngineSpec:
    """The engine's defaults for a device of this memory size, with its fitted host overheads."""
    _load_builtin()
    spec = ENGINES.get(name)(device_memory_bytes, tp)
    fitted = fitted_overheads().get(name)
    return spec.model_copy(update=fitted) if fitted else spec


def engine_names() -> list[str]:
    _load_builtin()
    return ENGINES.names()


def _load_builtin() -> None:
    from tokenfab.serving.engines import sglang, trtllm, vllm  # noqa: F401  (each registers itself)
