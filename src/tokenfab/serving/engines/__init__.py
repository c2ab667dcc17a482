"""Serving engines as they schedule: one module per engine behind a small policy protocol.

An engine decides, per iteration, how the replica composes its batch: the token budget and
sequence limit, whether long prompts are chunked (and the chunk size), whether waiting prompts
run together with decodes or pause them (prefill-first), which decode batch sizes run as
captured CUDA graphs (a batch is padded up to the next captured size), the host time each
iteration costs beyond the kernels, what happens when the KV cache is full (preempt and
recompute, or admit only what is guaranteed to finish), and how device memory is divided
(the memory policy the engine's KV-cache sizing follows).

Adding an engine is one module that builds an `EngineSpec` and one `@register_engine` line.
Defaults are those of the engine's documentation or source at the cited version; host times that
must be fitted on measured serving runs live in one data file, `serving/engines/overheads.yaml`
(read by `fitted_overheads`): per engine (the per-step overhead and front end of
`bench/fit_engine_overheads.py`), per engine release (`releases`: a stage that one release's
server shows, such as token delivery) and per model class (`architectures`). The host time of eager prompt
iterations is fitted per decoder layer and model class by `bench/fit_moe_prefill.py` into
`prefill_overheads.yaml` (`fitted_prefill_overheads`), which supersedes an `architectures` prefill_overhead_s.
A host time without a fit is 0.
"""

from __future__ import annotations

import bisect
import functools
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tokenfab.errors import InvalidInputError
from tokenfab.registry import Registry
from tokenfab.workload.spec import ModelSpec

DEFAULT_ENGINE = "vllm"
OVERHEADS_PATH = Path(__file__).with_name("overheads.yaml")
PREFILL_OVERHEADS_PATH = Path(__file__).with_name("prefill_overheads.yaml")  # bench/fit_moe_prefill.py's per-layer fit


class StaticReserve(BaseModel):
    """The memory an engine keeps out of its static pool (weights + KV), from which it sets its fraction as
    round((device - reserve) / device, 3): SGLang's default mem_fraction_static (server_args.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_memory_bytes: float = Field(gt=0, description="Device memory as the engine reads it (nvidia-smi memory.total).")
    fixed_bytes: float = Field(ge=0, description="Reserve independent of the layout (activations of the largest prefill "
                                                 "chunk, CUDA-graph buffers, backend metadata).")
    per_model_rank_bytes: float = Field(default=0.0, ge=0, description="Added per tp x pp rank.")
    dp_attention_bytes: float = Field(default=0.0, ge=0, description="Added once when attention-DP is on.")
    per_dp_rank_bytes: float = Field(default=0.0, ge=0, description="Added per attention-DP rank when attention-DP is on.")
    floor_bytes: float = Field(default=0.0, ge=0, description="Least reserve (before the speculative term).")
    speculative_bytes: float = Field(default=0.0, ge=0, description="Added for a draft model / MTP head and its graphs.")

    def reserved_bytes(self, tp: int = 1, pp: int = 1, dp: int = 1, speculative: bool = False) -> float:
        r = self.fixed_bytes + self.per_model_rank_bytes * tp * pp
        if dp > 1:
            r += self.dp_attention_bytes + self.per_dp_rank_bytes * dp
        return max(r, self.floor_bytes) + (self.speculative_bytes if speculative else 0.0)

    def fraction(self, tp: int = 1, pp: int = 1, dp: int = 1, speculative: bool = False) -> float:
        mem = self.device_memory_bytes
        return round((mem - self.reserved_bytes(tp, pp, dp, speculative)) / mem, 3)


class MemoryPolicy(BaseModel):
    """How an engine sizes its KV cache from device memory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["device-fraction", "static-fraction", "free-fraction"] = Field(
        description="device-fraction: the whole process (weights, activations, graphs, KV) stays under `fraction` of the "
                    "device (vLLM gpu_memory_utilization); static-fraction: weights plus KV pool take `fraction` "
                    "(SGLang mem_fraction_static); free-fraction: KV gets `fraction` of what is free after loading "
                    "(TensorRT-LLM free_gpu_memory_fraction).")
    fraction: float = Field(gt=0, le=1, description="The engine's fraction (see kind); with `reserve`, the value at "
                                                     "TP 1 without attention-DP or speculation.")
    cuda_graph_bytes: float = Field(default=0.0, ge=0, description="Memory held by captured CUDA graphs, per device.")
    reserve: StaticReserve | None = Field(default=None, description="static-fraction only: the engine derives its "
                                                                    "fraction from a reserve that grows with the layout.")
    runtime_bytes_per_slot_vocab: float = Field(
        default=0.0, ge=0, description="Bytes the engine allocates per sequence slot (max_batch_size) per padded vocabulary "
                                       "entry before it sizes the KV cache from free memory (TensorRT-LLM v0.x engine "
                                       "runtime: logits and decoder buffers); 0 for engines that size KV otherwise.")
    runtime_fixed_bytes: float = Field(
        default=0.0, ge=0, description="Bytes per device the engine process holds before it sizes the KV cache beyond "
                                       "weights, activations and the per-slot buffers (TensorRT-LLM v0.x engine runtime: "
                                       "CUDA context, TensorRT and library workspaces); 0 for engines without such a term.")
    sizing_base: Literal["device", "cuda-total"] = Field(
        default="device", description="The total the fraction applies to: the device-reported one (nvidia-smi), or "
                                      "CUDA's (torch.cuda.mem_get_info), below it by what the driver keeps.")
    context_bytes: float = Field(
        default=0.0, ge=0, description="Bytes the process holds (CUDA context, torch and distributed init at TP 1) when "
                                       "the engine reads free memory to size against; the fraction applies to what is "
                                       "left (SGLang); 0 for engines that size against the total.")
    distributed_bytes: float = Field(
        default=0.0, ge=0, description="Bytes more when the instance spans several GPUs (NCCL communicators, custom "
                                       "all-reduce buffers): held before sizing with `context_bytes` (SGLang), or "
                                       "counted against the budget with `non_torch_bytes` (vLLM).")
    non_torch_bytes: float = Field(
        default=0.0, ge=0, description="Memory outside torch's allocator that the engine's profiling run finds and "
                                       "charges to its budget before the KV cache (vLLM non_torch_increase: cuBLAS "
                                       "workspaces and the like at TP 1).")
    source: str = Field(min_length=1, description="Where the default comes from.")

    def sizing_kwargs(self, tp: int = 1, pp: int = 1, dp: int = 1) -> dict[str, float | str]:
        """The `MemoryModel` keywords beyond the fraction: the total the policy sizes against, what the process holds
        before it reads that total, and the non-torch memory charged to the budget (empty for a policy without them,
        so that its keywords stay the fraction alone)."""
        multi = tp * pp * dp > 1
        out: dict[str, float | str] = {}
        if self.sizing_base != "device":
            out["sizing_base"] = self.sizing_base
        held = self.context_bytes + (self.distributed_bytes if multi and self.context_bytes else 0.0)
        if held:
            out["held_before_sizing_bytes"] = held
        non_torch = self.non_torch_bytes + (self.distributed_bytes if multi and not self.context_bytes else 0.0)
        if non_torch:
            out["runtime_reserved_bytes"] = non_torch
        return out

    def runtime_reserved_bytes(self, max_num_seqs: int, vocab_size: int, world_size: int = 1) -> float:
        """Per-device bytes the engine holds before it measures free memory for the KV cache: the fixed part plus the
        buffers sized by max_batch_size x vocabulary; the vocabulary is padded to a multiple of the TP x PP world
        (TensorRT-LLM ModelConfig::getVocabSizePadded) and every rank holds the full padded width."""
        padded = -(-vocab_size // world_size) * world_size
        return self.runtime_fixed_bytes + self.runtime_bytes_per_slot_vocab * max_num_seqs * padded

    def memory_model_kwargs(self, tp: int = 1, pp: int = 1, dp: int = 1, speculative: bool = False) -> dict[str, float]:
        """The `MemoryModel` / `deployment()` keywords that apply this policy to a layout (tp x pp model ranks,
        `dp` attention-DP ranks, a draft model or MTP head when `speculative`): the fraction, plus `sizing_kwargs`."""
        key = {"device-fraction": "memory_utilization_frac", "free-fraction": "kv_free_memory_frac",
               "static-fraction": "static_memory_frac"}[self.kind]
        frac = self.reserve.fraction(tp, pp, dp, speculative) if self.reserve is not None else self.fraction
        return {key: frac, **self.sizing_kwargs(tp, pp, dp)}


class EngineSpec(BaseModel):
    """One serving engine's scheduling and memory behaviour (defaults per its docs/source)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str = Field(description="Engine version whose defaults these are.")
    max_num_seqs: int = Field(ge=1, description="Most running sequences (vLLM max_num_seqs, TRT-LLM max_batch_size).")
    max_num_batched_tokens: int = Field(ge=1, description="Token budget of one iteration (prefill + decode tokens).")
    chunked_prefill: bool = Field(description="Long prompts split over iterations.")
    prefill_chunk_tokens: int | None = Field(default=None, ge=1, description="Largest prefill chunk (SGLang chunked_prefill_size); None: the budget.")
    chunk_per_dp_rank: bool = Field(default=False, description="With attention-DP, each rank's token budget is the budget "
                                   "divided by the DP size (SGLang: chunked_prefill_size // dp_size under DP attention).")
    prefill_first: bool = Field(default=False, description="Waiting prompts run in their own iteration, pausing decodes (SGLang default), instead of sharing it.")
    cuda_graph_sizes: tuple[int, ...] = Field(default=(), description="Captured decode batch sizes; a decode-only batch is padded up to the next one.")
    step_overhead_s: float = Field(default=0.0, ge=0, description="Host time per iteration beyond the kernels (fitted; see overheads.yaml).")
    prefill_overhead_s: float = Field(default=0.0, ge=0, le=10.0, description="Host time beyond step_overhead_s of an "
                                      "iteration that carries prompt work, which the engines run eagerly, outside their "
                                      "CUDA graphs: SGLang's prompt-only (extend) iterations, TensorRT-LLM's iterations "
                                      "with a context request (ScheduledRequests.can_run_cuda_graph). Fitted per layer "
                                      "and model class (prefill_overheads.yaml; `for_model` scales it by the layers).")
    eager_prompt_iterations: bool = Field(
        default=True, description="Iterations carrying prompt work launch their kernels one by one from Python, "
                                  "outside the engine's CUDA graphs (so a fitted prefill_overhead_s applies); False for "
                                  "a runtime that executes a compiled engine per iteration (TensorRT-LLM v0.x TensorRT "
                                  "engines).")
    prefill_overhead_overlaps: bool = Field(
        default=False, description="True: the eager iteration's host time runs beside its kernels (the host launches "
                                   "ahead of the device), so the iteration takes the longer of the two; False: added "
                                   "to the kernels (fitted per engine with prefill_overhead_s).")
    frontend_s: float = Field(default=0.0, ge=0, description="Serial front-end time per request (HTTP, detokenising, "
                                                             "scheduling handoff) in the single-threaded API server (fitted).")
    frontend_s_per_token: float = Field(default=0.0, ge=0, description="Serial front-end time per prompt token (tokenisation; fitted).")
    delivery_s_per_token: float = Field(
        default=0.0, ge=0, description="Serial time per output token in the server process that streams tokens to the "
                                       "clients (detokenising, one SSE chunk each; `serving.delivery`), shared with the "
                                       "front end's per-request time; fitted per release, 0: tokens reach the client as "
                                       "the iteration ends.")
    kv_full: Literal["preempt", "reserve"] = Field(
        default="preempt", description="preempt: admit on current need, preempt (recompute) when blocks run out; reserve: admit only "
                                       "requests whose whole output fits (TensorRT-LLM GUARANTEED_NO_EVICT).")
    block_tokens: int = Field(default=16, ge=1, description="Tokens per KV block.")
    batch_wait_timeout_iters: int = Field(
        default=0, ge=0, le=1_000_000, description="Iterations waiting prompts are held back while decodes run, to "
                                                   "batch more of them (TensorRT-LLM batch_wait_timeout_iters; 0: off).")
    batch_wait_max_tokens_ratio: float = Field(
        default=0.0, ge=0, le=1, description="Prompts stop waiting once the iteration's tokens reach this fraction of the "
                                             "token budget (TensorRT-LLM batch_wait_max_tokens_ratio; 0: off).")
    kv_sizing_window_aware: bool = Field(
        default=True, description="The KV pool is sized for the workload's sequences with sliding-window layers holding "
                                  "only their window; False: sized as if every layer were full attention, so a "
                                  "sliding-window model's pool holds as many tokens as a full-attention one of its "
                                  "layers would (TensorRT-LLM).")
    kv_send_streams: int | None = Field(
        default=None, ge=1, le=1024, description="P/D: concurrent KV sends per prefill replica, later ones queue "
                                                 "(TensorRT-LLM TRTLLM_KVCACHE_SEND_MAX_CONCURRENCY_NUM, default 1; "
                                                 "`serving.disagg`); None: every transfer starts when its prompt ends.")
    pp_limits: Literal["replica", "micro-batch"] = Field(
        default="replica", description="With pipeline parallelism, what max_num_seqs and the token budget bound: "
                                       "'micro-batch': each of the pp micro-batches in flight, so the replica holds pp "
                                       "times as many sequences and a step (every micro-batch advancing once) pp "
                                       "budgets of tokens (TensorRT-LLM; `pipelined`); 'replica': all of them together.")
    memory: MemoryPolicy
    source: str = Field(min_length=1, description="Docs/source the defaults come from, with version.")

    def pipelined(self, pp: int) -> EngineSpec:
        """The limits a replica of `pp` pipeline stages schedules its steps with. A step of the step model is one
        round of all pp micro-batches in flight (`execution.step`); an engine whose limits bound each micro-batch
        ('micro-batch') then admits pp x max_num_seqs sequences and pp x the token budget per step, and pads each
        micro-batch's decodes to its own captured CUDA-graph size, i.e. the step's to pp x a captured size (pp x
        the smallest captured size >= ceil(n / pp) is the smallest multiple of pp of the list >= n). Itself for one
        stage or 'replica' limits."""
        if pp == 1 or self.pp_limits == "replica":
            return self
        return self.model_copy(update={"max_num_seqs": self.max_num_seqs * pp,
                                       "max_num_batched_tokens": self.max_num_batched_tokens * pp,
                                       "cuda_graph_sizes": tuple(s * pp for s in self.cuda_graph_sizes)})

    def padded_decode(self, num_decode: int) -> int:
        """Decode batch size actually run: the next captured CUDA-graph size, or itself past the largest."""
        sizes = self.cuda_graph_sizes
        if not sizes or num_decode > sizes[-1]:
            return num_decode
        return sizes[bisect.bisect_left(sizes, num_decode)]


EngineFactory = Callable[[float, int], EngineSpec]  # (device memory bytes, tp) -> spec
ENGINES: Registry[EngineFactory] = Registry("engine")
register_engine = ENGINES.register


FITTED_FIELDS = ("step_overhead_s", "prefill_overhead_s", "frontend_s", "frontend_s_per_token", "delivery_s_per_token")


def _fields(row: dict | None) -> dict[str, float]:
    return {k: float(row[k]) for k in FITTED_FIELDS if k in row} if row else {}


@functools.lru_cache(maxsize=1)
def fitted_overheads() -> dict[str, dict]:
    """Per engine, its fitted host times (seconds; empty without the data file): the engine-wide fields of
    `FITTED_FIELDS`, and under `releases` (keyed 'major.minor') and `architectures` (keyed by `architecture_key`)
    the fields fitted for one release or one model class only."""
    if not OVERHEADS_PATH.exists():
        return {}
    data = yaml.safe_load(OVERHEADS_PATH.read_text()) or {}
    out: dict[str, dict] = {}
    for name, row in data.get("engines", {}).items():
        out[name] = {**_fields(row), "releases": {str(k): _fields(v) for k, v in (row.get("releases") or {}).items()},
                     "architectures": {str(k): _fields(v) for k, v in (row.get("architectures") or {}).items()}}
    return out


@functools.lru_cache(maxsize=1)
def fitted_prefill_overheads() -> dict[str, dict[str, float]]:
    """Per engine, per model architecture (`architecture_key`), the fitted host time per decoder layer of an
    iteration carrying prompt work (seconds per layer; written by bench/fit_moe_prefill.py; empty without the data
    file). Per layer, because an eager iteration launches each layer's kernels from Python one by one."""
    if not PREFILL_OVERHEADS_PATH.exists():
        return {}
    data = yaml.safe_load(PREFILL_OVERHEADS_PATH.read_text()) or {}
    return {name: {arch: float(row["prefill_overhead_s_per_layer"]) for arch, row in (fit.get("classes") or {}).items()}
            for name, fit in data.get("engines", {}).items()}


@functools.lru_cache(maxsize=1)
def fitted_prefill_overlaps() -> dict[str, bool]:
    """Per engine, whether the fit found its eager iterations' host time hidden behind their kernels (the longer of
    the two) rather than added to them (`EngineSpec.prefill_overhead_overlaps`); empty without the data file."""
    if not PREFILL_OVERHEADS_PATH.exists():
        return {}
    data = yaml.safe_load(PREFILL_OVERHEADS_PATH.read_text()) or {}
    return {name: bool(fit.get("overlaps_kernels", False)) for name, fit in data.get("engines", {}).items()}


def release_key(version: str | None) -> str | None:
    """'major.minor' of an engine version ('1.0.0rc3' -> '1.0'; None, or not of that form: None), the key a
    per-release fit is stored under."""
    if not version:
        return None
    m = re.match(r"v?(\d+)\.(\d+)", version)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def architecture_key(model: ModelSpec) -> str:
    """The model class a per-architecture engine fit is keyed by: 'mla-moe' (DeepSeek-V3/R1: latent attention and
    routed experts, one code path in each engine), 'moe', or 'dense'."""
    mla = model.first_attention.kind == "mla"
    return "mla-moe" if mla and model.is_moe else "moe" if model.is_moe else "mla" if mla else "dense"


def engine_spec(name: str, device_memory_bytes: float, tp: int = 1, version: str | None = None,
                cuda_graph_max_batch: int | None = None,
                cuda_graph_batch_sizes: tuple[int, ...] | None = None) -> EngineSpec:
    """The engine's defaults for a device of this memory size, with its fitted host overheads. `version` selects
    a release whose defaults differ (an engine that models one release takes none); `cuda_graph_max_batch` the
    largest decode batch captured as a CUDA graph, for an engine whose capture list follows from it (TensorRT-LLM's
    cuda_graph_config.max_batch_size); `cuda_graph_batch_sizes` an explicit capture list instead (TensorRT-LLM's
    cuda_graph_config.batch_sizes; empty: no CUDA graphs)."""
    _load_builtin()
    factory = ENGINES.get(name)
    takes = inspect.signature(factory).parameters
    kwargs: dict = {}
    if version is not None:
        if "version" not in takes:
            raise InvalidInputError(f"engine {name} models one release ({factory(device_memory_bytes, tp).version}); "
                                    f"an engine version can be chosen for: {', '.join(versioned_engines())}")
        kwargs["version"] = version
    if cuda_graph_batch_sizes is not None:
        if "cuda_graph_batch_sizes" not in takes:
            graphed = [n for n in ENGINES.names() if "cuda_graph_batch_sizes" in inspect.signature(ENGINES.get(n)).parameters]
            raise InvalidInputError(f"engine {name} keeps its own CUDA-graph batch sizes; a capture list can be chosen "
                                    f"for: {', '.join(graphed)}")
        kwargs["cuda_graph_batch_sizes"] = tuple(cuda_graph_batch_sizes)
    if cuda_graph_max_batch is not None:
        if "cuda_graph_max_batch" not in takes:
            graphed = [n for n in ENGINES.names() if "cuda_graph_max_batch" in inspect.signature(ENGINES.get(n)).parameters]
            raise InvalidInputError(f"engine {name} keeps its own CUDA-graph batch sizes; a largest captured batch can be "
                                    f"chosen for: {', '.join(graphed)}")
        kwargs["cuda_graph_max_batch"] = cuda_graph_max_batch
    spec = factory(device_memory_bytes, tp, **kwargs)
    row = fitted_overheads().get(name) or {}
    fitted = {**_fields(row), **(row.get("releases") or {}).get(release_key(version) or "", {})}
    return spec.model_copy(update=fitted) if fitted else spec


def for_model(spec: EngineSpec, model: ModelSpec) -> EngineSpec:
    """`spec` serving `model`: with the host times fitted for the model's class (`fitted_overheads`' `architectures`),
    and the host time of its eager prompt iterations, the per-layer time fitted for the engine and the model's class
    (`fitted_prefill_overheads`, bench/fit_moe_prefill.py) times the model's decoder layers, where there is such a fit
    and the engine runs such iterations eagerly (it supersedes an `architectures` prefill_overhead_s); the spec itself
    otherwise (dense models of every engine: none is fitted; TensorRT-LLM's v0.x TensorRT-engine runtime)."""
    row = fitted_overheads().get(spec.name) or {}
    fitted = (row.get("architectures") or {}).get(architecture_key(model))
    spec = spec.model_copy(update=fitted) if fitted else spec
    per_layer = fitted_prefill_overheads().get(spec.name, {}).get(architecture_key(model))
    if per_layer is None or not spec.eager_prompt_iterations:
        return spec
    return spec.model_copy(update={"prefill_overhead_s": per_layer * model.num_layers,
                                   "prefill_overhead_overlaps": fitted_prefill_overlaps().get(spec.name, False)})


def versioned_engines() -> list[str]:
    """Engines whose factory takes a release (`engine_spec(..., version=)`)."""
    _load_builtin()
    return [n for n in ENGINES.names() if "version" in inspect.signature(ENGINES.get(n)).parameters]


def engine_names() -> list[str]:
    _load_builtin()
    return ENGINES.names()


def _load_builtin() -> None:
    from tokenfab.serving.engines import sglang, trtllm, vllm  # noqa: F401  (each registers itself)
