"""Model architecture as plain data: what the cost of a forward pass depends on.

A model is a stack of `LayerGroup`s (consecutive layers with the same shape), so a
DeepSeek-V3 with 3 dense and 58 MoE layers is two groups and every cost is computed
once per group, not once per layer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AttentionSpec(_Frozen):
    """Self-attention of one layer."""

    kind: Literal["mha", "mla", "linear"] = Field(description=(
        "'mha' covers MHA/GQA/MQA; 'mla' is DeepSeek multi-head latent attention; 'linear' is a recurrent "
        "linear-attention layer (Gated DeltaNet in Qwen3-Next / Qwen3.5): a fixed-size state per sequence, no KV cache."))
    num_heads: int = Field(ge=1, description="Query heads ('linear': value heads).")
    num_kv_heads: int = Field(ge=1, description="Key/value heads (GQA groups); equals num_heads for MHA, 1 for MQA ('linear': key heads).")
    head_dim: int = Field(ge=1, description="Per-head dimension of queries and keys.")
    v_head_dim: int = Field(ge=1, description="Per-head dimension of values (differs from head_dim only for MLA and linear layers).")
    output_gate: bool = Field(default=False, description="Sigmoid gate on the attention output, projected with q (Qwen3-Next: q_proj is 2x wide).")
    conv_kernel_size: int = Field(default=0, ge=0, description="'linear' only: causal depthwise convolution over q, k, v (0: none).")
    # DeepSeek sparse attention (DSA, DeepSeek-V3.2): a light indexer scores all cached tokens, the core attends the top-k.
    index_num_heads: int | None = Field(default=None, ge=1, description="DSA indexer heads.")
    index_head_dim: int | None = Field(default=None, ge=1, description="DSA indexer key dimension (cached per token).")
    index_topk_tokens: int | None = Field(default=None, ge=1, description="DSA: tokens each query attends to.")
    qkv_bias: bool = False
    out_bias: bool = False
    weights_quantized: bool = Field(default=True, description=(
        "Whether the checkpoint stores this attention's projections in the model's linear-layer format; False "
        "where its quantization_config leaves self_attn unconverted (GPT-OSS MXFP4: attention stays BF16), so "
        "they run as 16-bit GEMMs whatever --dtype says."))
    sliding_window_tokens: int | None = Field(default=None, ge=1, description="Local attention window, if any.")
    rotary_dim: int = Field(ge=0, description="Dimensions per head that get rotary embedding.")
    # MLA only (DeepSeek-V2/V3): low-rank projections and the compressed KV cache.
    q_lora_rank: int | None = Field(default=None, ge=1, description="Rank of the query down-projection (None: full-rank q).")
    kv_lora_rank: int | None = Field(default=None, ge=1, description="Rank of the compressed latent KV.")
    qk_nope_head_dim: int | None = Field(default=None, ge=1)
    qk_rope_head_dim: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> AttentionSpec:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.kind == "mla" and (self.kv_lora_rank is None or self.qk_nope_head_dim is None):
            raise ValueError("MLA attention needs kv_lora_rank and qk_nope_head_dim")
        if (self.index_topk_tokens is None) != (self.index_head_dim is None):
            raise ValueError("DSA needs both index_head_dim and index_topk_tokens")
        return self

    def kv_cache_elements_per_token(self) -> int:
        """Elements cached per token in one layer (all KV heads): K and V, or MLA's latent + rope key."""
        if self.kind == "linear":
            return 0
        index = int(self.index_head_dim or 0)
        if self.kind == "mla":
            return int(self.kv_lora_rank) + int(self.qk_rope_head_dim or 0) + index
        return self.num_kv_heads * (self.head_dim + self.v_head_dim) + index

    def state_elements_per_sequence(self) -> tuple[int, int]:
        """'linear' layers: (recurrent state elements, convolution state elements) one sequence keeps.
        The state is num_heads x head_dim x v_head_dim (a dk x dv matrix per value head); the
        convolution keeps the last kernel - 1 inputs of q, k and v."""
        if self.kind != "linear":
            return 0, 0
        conv_dim = 2 * self.num_kv_heads * self.head_dim + self.num_heads * self.v_head_dim
        return self.num_heads * self.head_dim * self.v_head_dim, max(0, self.conv_kernel_size - 1) * conv_dim


class FFNSpec(_Frozen):
    """Feed-forward block of one layer: dense MLP or mixture of experts."""

    kind: Literal["dense", "moe"]
    gated: bool = Field(description="SwiGLU/GeGLU (gate and up projections) vs. a plain 2-matrix MLP.")
    activation: str = Field(description="'silu', 'gelu', ... (elementwise cost only).")
    intermediate_size: int = Field(ge=0, description="Dense MLP width (0 for pure MoE layers).")
    mlp_bias: bool = False
    num_experts: int = Field(default=0, ge=0, description="Routed experts.")
    num_experts_per_token: int = Field(default=0, ge=0, description="Top-k routed experts per token.")
    expert_intermediate_size: int = Field(default=0, ge=0)
    num_shared_experts: int = Field(default=0, ge=0, description="Always-active experts (DeepSeek, Qwen2-MoE).")
    shared_expert_intermediate_size: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> FFNSpec:
        if self.kind == "moe":
            if not (self.num_experts and self.num_experts_per_token and self.expert_intermediate_size):
                raise ValueError("MoE layer needs num_experts, num_experts_per_token and expert_intermediate_size")
            if self.num_experts_per_token > self.num_experts:
                raise ValueError("num_experts_per_token exceeds num_experts")
        elif self.intermediate_size <= 0:
            raise ValueError("dense FFN needs intermediate_size > 0")
        return self

    @property
    def matrices(self) -> int:
        """Weight matrices per expert/MLP: 3 for gated (gate, up, down), 2 otherwise."""
        return 3 if self.gated else 2


class LayerGroup(_Frozen):
    """`num_layers` consecutive decoder layers with identical shapes."""

    num_layers: int = Field(ge=1)
    attention: AttentionSpec
    ffn: FFNSpec
    parallel_attn_mlp: bool = Field(default=False, description="GPT-J style: attention and MLP read the same normed input.")


class ModelSpec(_Frozen):
    """A decoder-only transformer language model."""

    name: str
    family: str = Field(description="Hugging Face model_type the spec was read from.")
    hidden_size: int = Field(ge=1)
    vocab_size: int = Field(ge=1)
    max_position_embeddings: int = Field(ge=1)
    tie_word_embeddings: bool = False
    lm_head_bias: bool = False
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    layers: tuple[LayerGroup, ...] = Field(min_length=1)
    source: str = Field(default="", description="config.json path or bundled name it came from.")
    weight_format: str | None = Field(default=None, description=(
        "Storage format the checkpoint's quantization_config names ('nvfp4', 'mxfp4', 'fp8-block128', 'fp8-tensor'; "
        "workload.weight_format); None: the config names none, so a low-precision run gets the format of the "
        "family's published checkpoint or the dtype's default."))
    num_mtp_layers: int = Field(default=0, ge=0, description="Multi-token-prediction layers shipped beside the main model (DeepSeek-V3 num_nextn_predict_layers); not part of the forward pass, usable as a speculative drafter.")

    @property
    def num_layers(self) -> int:
        return sum(g.num_layers for g in self.layers)

    @property
    def is_moe(self) -> bool:
        return any(g.ffn.kind == "moe" for g in self.layers)

    @property
    def first_attention(self) -> AttentionSpec:
        return self.layers[0].attention

    def __hash__(self) -> int:  # used as a cache key; equality stays field-wise
        return hash((self.name, self.source, self.num_layers, self.hidden_size))
