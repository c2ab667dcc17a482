"""Device memory: weights, KV cache, activations, against the usable capacity.

Per device, on the busiest pipeline stage. Linear-layer weights are stored in the
checkpoint's weight format, block scales included (`workload.weight_format`); attention
where the checkpoint keeps it so, embeddings, LM head, norms and routers stay 16-bit (as
quantisation tools leave them). KV heads fewer than the TP degree are replicated; an MLA latent
cache is replicated on every TP rank. Usable capacity is `memory_utilization_frac` of
the device (vLLM's default gpu_memory_utilization is 0.9: the rest is the runtime's
context, CUDA graphs and fragmentation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from tokenfab.execution.config import ParallelConfig, PrecisionConfig, layers_per_stage
from tokenfab.hardware.spec import SystemSpec
from tokenfab.units import bytes_per_element
from tokenfab.workload.params import attention_params, mlp_params
from tokenfab.workload.spec import ModelSpec
from tokenfab.workload.weight_format import checkpoint_layout

DEFAULT_MEMORY_UTILIZATION_FRAC = 0.9  # vLLM EngineArgs default gpu_memory_utilization (docs.vllm.ai)


@dataclass(slots=True, unsafe_hash=True)  # not frozen: built per operator, see cost.result.OpCost
class MemoryFootprint:
    weights_bytes: float
    kv_cache_bytes: float
    activations_bytes: float
    capacity_bytes: float
    usable_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes + self.activations_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.usable_bytes

    def to_dict(self) -> dict[str, float]:
        return {
            "weights": self.weights_bytes, "kv_cache": self.kv_cache_bytes, "activations": self.activations_bytes,
            "total_per_device": self.total_bytes, "capacity_per_device": self.capacity_bytes,
            "usable_per_device": self.usable_bytes,
        }


class MemoryModel:
    """Footprint of a deployment per device as a function of the tokens it holds."""

    def __init__(self, model: ModelSpec, system: SystemSpec, par: ParallelConfig, prec: PrecisionConfig,
                 memory_utilization_frac: float = DEFAULT_MEMORY_UTILIZATION_FRAC, kv_free_memory_frac: float | None = None,
                 static_memory_frac: float | None = None, runtime_reserved_bytes: float = 0.0,
                 sizing_base: Literal["device", "cuda-total"] = "device", held_before_sizing_bytes: float = 0.0):
        """KV-cache sizing follows one engine policy: by default vLLM's (the whole process below
        `memory_utilization_frac` of the device); `kv_free_memory_frac`: TensorRT-LLM's (the KV cache gets that
        fraction of the memory left after weights and activations, its free_gpu_memory_fraction, default 0.9);
        `static_memory_frac`: SGLang's (weights plus the KV pool take that fraction of the device,
        mem_fraction_static; activations live in the rest). `runtime_reserved_bytes`: engine buffers allocated before
        the KV cache is sized, which its free-memory measurement therefore excludes (TensorRT-LLM v0.x runtime and
        decoder buffers, `MemoryPolicy.runtime_reserved_bytes`; vLLM's non-torch memory, counted against its budget).
        `sizing_base`: the total each policy sizes against: the device-reported one, or CUDA's total (vLLM's requested
        memory, SGLang's free-memory reading, TensorRT-LLM's free-memory measurement) below it by what the driver keeps;
        `held_before_sizing_bytes`: what the process already holds when the engine reads that total (SGLang reads
        free memory after its CUDA context and distributed init, so the fraction applies to what is left)."""
        self.model, self.par, self.prec = model, par, prec
        self.capacity = system.chip.device_memory_bytes
        total = system.chip.cuda_total_memory_bytes if sizing_base == "cuda-total" else self.capacity
        self.sizing_base_bytes = total - held_before_sizing_bytes
        self.usable = self.sizing_base_bytes * memory_utilization_frac
        self.kv_free_memory_frac = kv_free_memory_frac
        self.static_memory_frac = static_memory_frac
        self.runtime_reserved_bytes = runtime_reserved_bytes
        self.weights_bytes = self._weights()
        self._kv_scale = bytes_per_element(prec.kv) * layers_per_stage(model.num_layers, par.pp) / model.num_layers
        self.kv_growing_bytes_per_token = self._kv_per_token()  # layers that keep every token of the context
        self.window_layers = self._window_layers()
        self.state_bytes_per_sequence = self._state_per_sequence()
        # every attention layer's KV for every token: what a paged pool without window eviction reserves
        # (the serving simulator's figure; `kv_bytes_per_token_at` gives the window-aware one)
        self.kv_bytes_per_token = self.kv_growing_bytes_per_token + sum(b for _, b in self.window_layers)
        # constants of `activations_bytes` and `max_batch`, computed once (predict asks for a footprint 5 times a call)
        self._act_bytes_per_token = self._activation_bytes_per_token()
        self._empty_total_bytes = self.footprint(0, 0, 0).total_bytes

    def _weights(self) -> float:
        """Per-device weight bytes. Linear layers the checkpoint quantises cost its format's bytes per weight, block
        scales included (`workload.weight_format.checkpoint_layout`: NVFP4 4.5 bits, MXFP4 4.25, FP8 with 128 x 128
        blocks 8.002); attention the checkpoint keeps 16-bit, embeddings, LM head, norms and routers are 16-bit."""
        m, par = self.model, self.par
        layout = checkpoint_layout(m, self.prec.weights)
        wb, half = layout.bytes_per_weight, bytes_per_element(self.prec.activations)
        frac = layers_per_stage(m.num_layers, par.pp) / m.num_layers
        h = m.hidden_size
        linear = other = 0.0
        for g in m.layers:
            attn = g.attention
            per_layer_attn = self._attention_per_device(attn)
            if attn.weights_quantized and not layout.attention_16bit:
                linear += g.num_layers * per_layer_attn
            else:  # the checkpoint keeps attention in 16-bit (GPT-OSS MXFP4, nvidia/DeepSeek-R1-FP4)
                other += g.num_layers * per_layer_attn
            ffn = g.ffn
            if ffn.kind == "dense":
                linear += g.num_layers * mlp_params(ffn, h, ffn.intermediate_size) / par.tp
            else:
                # redundant slots (EPLB) hold whole copies; ceil: an expert count ep does not divide fills every
                # rank's slots with copies
                slots = math.ceil((ffn.num_experts + par.num_redundant_experts) / par.ep)
                experts = slots * mlp_params(ffn, h, ffn.expert_intermediate_size) / par.expert_tp
                shared = mlp_params(ffn, h, ffn.shared_expert_intermediate_size) / par.tp if ffn.num_shared_experts else 0.0
                linear += g.num_layers * (experts + shared)
                other += g.num_layers * h * ffn.num_experts
            other += g.num_layers * 2 * h
        head = m.vocab_size * h / par.tp
        embed_and_head = head if m.tie_word_embeddings else 2 * head
        if par.pp > 1:
            embed_and_head = head  # first stage holds the embedding, last the head
        return frac * (linear * wb + other * half) + embed_and_head * half

    def _attention_per_device(self, attn) -> float:
        """One layer's attention weights on one TP rank. KV heads fewer than the TP degree are replicated; MLA's
        down-projections (q_a and kv_a with the rope key, fused in SGLang's fused_qkv_a_proj_with_mqa) are
        ReplicatedLinear in SGLang and vLLM (models/deepseek_v2.py), so every rank holds them whole."""
        h, tp = self.model.hidden_size, self.par.tp
        params = attention_params(attn, h)
        if attn.kind == "mla":
            replicated = h * (int(attn.q_lora_rank or 0) + int(attn.kv_lora_rank) + int(attn.qk_rope_head_dim or 0))
            return (params - replicated) / tp + replicated
        per_device = params / tp
        if attn.kind == "mha" and attn.num_kv_heads < tp:  # replicated KV heads
            per_device += h * (attn.head_dim + attn.v_head_dim) * (1 - attn.num_kv_heads / tp)
        return per_device

    def _kv_per_token(self) -> float:
        """Bytes per cached token of the layers that keep every token (full attention, MLA, DSA keys)."""
        return sum(g.num_layers * self._kv_elems(g.attention) for g in self.model.layers
                   if g.attention.sliding_window_tokens is None) * self._kv_scale

    def _kv_elems(self, attn) -> float:
        if attn.kind == "mha":
            index = int(attn.index_head_dim or 0)
            return max(1, attn.num_kv_heads // self.par.tp) * (attn.head_dim + attn.v_head_dim) + index
        return attn.kv_cache_elements_per_token()  # MLA latent (replicated on TP ranks); 0 for linear layers

    def _window_layers(self) -> list[tuple[int, float]]:
        """(window tokens, bytes per cached token) of the sliding-window layers: each holds at most its window."""
        return [(int(g.attention.sliding_window_tokens), g.num_layers * self._kv_elems(g.attention) * self._kv_scale)
                for g in self.model.layers if g.attention.sliding_window_tokens is not None]

    def _state_per_sequence(self) -> float:
        """Linear-attention layers: recurrent state (fp32, as Qwen3-Next/3.5 keep it) plus the convolution
        window (activation format) per sequence, split over TP like the heads."""
        per_stage = layers_per_stage(self.model.num_layers, self.par.pp) / self.model.num_layers
        act = bytes_per_element(self.prec.activations)
        total = 0.0
        for g in self.model.layers:
            state, conv = g.attention.state_elements_per_sequence()
            total += g.num_layers * (state * 4.0 + conv * act) / self.par.tp
        return total * per_stage

    def kv_bytes(self, context_len: float, num_sequences: int) -> float:
        """Per-device cache bytes of `num_sequences` sequences of `context_len` tokens: full layers grow with the
        context, sliding-window layers stop at their window, linear layers keep a fixed state per sequence."""
        windowed = sum(b * min(context_len, w) for w, b in self.window_layers)
        return num_sequences * (context_len * self.kv_growing_bytes_per_token + windowed + self.state_bytes_per_sequence)

    def kv_bytes_per_token_at(self, context_len: float) -> float:
        """Mean cache bytes per token for sequences of `context_len` tokens (what a KV pool should divide by:
        tends to `kv_growing_bytes_per_token` for contexts far beyond the windows)."""
        return self.kv_bytes(context_len, 1) / context_len if context_len > 0 else self.kv_bytes_per_token

    def _activation_bytes_per_token(self) -> float:
        """Transient bytes per prefill token: the residual stream twice plus the widest intermediate."""
        m, par = self.model, self.par
        act = bytes_per_element(self.prec.activations)
        widest = 0
        for g in m.layers:
            f = g.ffn
            mlp = (f.intermediate_size if f.kind == "dense" else f.expert_intermediate_size * f.num_experts_per_token)
            widest = max(widest, (2 if f.gated else 1) * mlp // max(1, par.tp),
                          (g.attention.num_heads * g.attention.head_dim * 3) // par.tp)
        return (2 * m.hidden_size + widest) * act

    def activations_bytes(self, prefill_tokens: int, num_sequences: int) -> float:
        """Peak transient memory of a prefill step: the widest intermediate plus logits."""
        logits = num_sequences * self.model.vocab_size / self.par.tp * 4.0
        return prefill_tokens * self._act_bytes_per_token + logits

    def footprint(self, tokens_in_cache: float, prefill_tokens: int, num_sequences: int) -> MemoryFootprint:
        """Per-device memory holding `tokens_in_cache` KV tokens (the replica's whole batch of
        `num_sequences` equally long sequences)."""
        seqs = max(1, num_sequences)
        return MemoryFootprint(
            self.weights_bytes, self.kv_bytes(tokens_in_cache / seqs, seqs) if tokens_in_cache > 0 else 0.0,
            self.activations_bytes(prefill_tokens, num_sequences), self.capacity, self.usable,
        )

    def kv_capacity_tokens(self, prefill_tokens: int = 0, num_sequences: int = 0, context_len: float | None = None) -> int:
        """KV tokens that fit beside the weights (and one step's activations) on each device. With
        `context_len`, tokens are costed at `kv_bytes_per_token_at(context_len)` (sliding-window and linear
        layers amortised over sequences of that length); without it, at every layer's full per-token cost."""
        runtime = self.runtime_reserved_bytes  # held before any policy measures what is left
        if self.static_memory_frac is not None:
            free = self.static_memory_frac * self.sizing_base_bytes - self.weights_bytes - runtime
        elif self.kv_free_memory_frac is not None:
            left = self.sizing_base_bytes - self.weights_bytes - self.activations_bytes(prefill_tokens, num_sequences) - runtime
            free = self.kv_free_memory_frac * left
        else:
            free = self.usable - self.weights_bytes - self.activations_bytes(prefill_tokens, num_sequences) - runtime
        per_token = self.kv_bytes_per_token_at(context_len) if context_len else self.kv_bytes_per_token
        return max(0, math.floor(free / per_token)) if per_token > 0 else 0

    def ledger(self, prefill_tokens: int = 0, num_sequences: int = 0) -> dict[str, float]:
        """Where each device's memory goes under this engine policy (bytes): weights, activations and
        workspace of the largest step, the engine's runtime buffers allocated before KV sizing, the KV cache the
        policy allocates, what lies outside the total the policy sizes against (the driver's share below CUDA's
        total, the process's CUDA context and distributed init where the engine reads free memory after them), and
        what the policy leaves unused (the engine's headroom for CUDA graphs, the runtime and fragmentation)."""
        kv = self.kv_capacity_tokens(prefill_tokens, num_sequences) * self.kv_bytes_per_token
        act = self.activations_bytes(prefill_tokens, num_sequences)
        runtime = self.runtime_reserved_bytes
        outside = max(0.0, self.capacity - self.sizing_base_bytes)
        return {"capacity": self.capacity, "weights": self.weights_bytes, "activations": act, "runtime_buffers": runtime,
                "kv_cache": kv, "driver_and_context": outside,
                "unused": max(0.0, self.capacity - self.weights_bytes - act - runtime - kv - outside)}

    def max_batch(self, input_len: int, output_len: int, dp: int = 1) -> int:
        """Largest static batch (over all replicas) whose prompts and outputs fit.

        The footprint is affine in the batch (weights + b x (KV, activations and logits of one request)), so
        the bound is solved directly and checked against `footprint` (one step either way absorbs rounding)."""
        base = self._empty_total_bytes  # self.footprint(0, 0, 0).total_bytes
        one = self.footprint(input_len + output_len, input_len, 1).total_bytes - base
        if one <= 0:
            return (1 << 24) * dp
        b = max(0, min(1 << 24, math.floor((self.usable - base) / one)))
        while b > 0 and not self._fits(b, input_len, output_len):
            b -= 1
        while b < 1 << 24 and self._fits(b + 1, input_len, output_len):
            b += 1
        return b * dp

    def _fits(self, batch: int, input_len: int, output_len: int) -> bool:
        return self.footprint(batch * (input_len + output_len), batch * input_len, batch).fits
