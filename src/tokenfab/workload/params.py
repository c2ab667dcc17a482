"""Parameter counts of a model, by component, from its architecture alone.

These counts decide weight memory and the bytes a decode step must stream, so they are
checked against the published counts of every bundled model (tests/unit/workload).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenfab.workload.spec import AttentionSpec, FFNSpec, ModelSpec


@dataclass(frozen=True, slots=True)
class ParamCount:
    """Parameters of a model, split the way parallelism splits them."""

    embedding: int  # input token embedding
    lm_head: int  # output projection (0 when tied to the embedding)
    attention: int  # all layers' attention projections and their norms
    dense_ffn: int  # dense MLPs, plus MoE routers and shared experts (active for every token)
    routed_experts: int  # all routed experts of all MoE layers
    active_routed_experts: int  # routed experts one token uses (top-k)
    norms: int  # layer norms and the final norm

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.attention + self.dense_ffn + self.routed_experts + self.norms

    @property
    def active(self) -> int:
        """Parameters that touch one token (embedding counted once, as model cards do)."""
        return self.total - self.routed_experts + self.active_routed_experts


def attention_params(attn: AttentionSpec, hidden: int) -> int:
    """Weights (and biases) of one layer's attention projections."""
    if attn.kind == "linear":
        return linear_attention_params(attn, hidden)
    if attn.kind == "mla":
        nope, rope = int(attn.qk_nope_head_dim), int(attn.qk_rope_head_dim or 0)
        heads, kv_rank = attn.num_heads, int(attn.kv_lora_rank)
        if attn.q_lora_rank:
            q = hidden * attn.q_lora_rank + attn.q_lora_rank + attn.q_lora_rank * heads * (nope + rope)
        else:
            q = hidden * heads * (nope + rope)
        kv = hidden * (kv_rank + rope) + kv_rank + kv_rank * heads * (nope + attn.v_head_dim)
        out = heads * attn.v_head_dim * hidden
        return q + kv + out + _indexer_params(attn, hidden)
    q = hidden * attn.num_heads * attn.head_dim * (2 if attn.output_gate else 1)
    kv = hidden * attn.num_kv_heads * (attn.head_dim + attn.v_head_dim)
    out = attn.num_heads * attn.v_head_dim * hidden
    bias = 0
    if attn.qkv_bias:
        bias += attn.num_heads * attn.head_dim + attn.num_kv_heads * (attn.head_dim + attn.v_head_dim)
    if attn.out_bias:
        bias += hidden
    return q + kv + out + bias


def linear_attention_params(attn: AttentionSpec, hidden: int) -> int:
    """Gated DeltaNet (Qwen3-Next / Qwen3.5, transformers Qwen3NextGatedDeltaNet): in-projections of q, k
    (key heads), v and the output gate z (value heads), beta and alpha (one scalar per value head each),
    the depthwise causal convolution over q, k, v, per-head dt bias and A_log, the gated RMSNorm of
    the output (one head's width), and the out-projection."""
    key_dim, value_dim = attn.num_kv_heads * attn.head_dim, attn.num_heads * attn.v_head_dim
    in_proj = hidden * (2 * key_dim + 2 * value_dim + 2 * attn.num_heads)
    conv = (2 * key_dim + value_dim) * attn.conv_kernel_size
    return in_proj + conv + 2 * attn.num_heads + attn.v_head_dim + value_dim * hidden


def _indexer_params(attn: AttentionSpec, hidden: int) -> int:
    """DSA lightning indexer (DeepSeek-V3.2): query up-projection from the q latent, one shared key
    projection with a LayerNorm, and per-head weights."""
    if not attn.index_head_dim:
        return 0
    heads, dim = int(attn.index_num_heads or 1), attn.index_head_dim
    q_in = attn.q_lora_rank or hidden
    return q_in * heads * dim + hidden * dim + 2 * dim + hidden * heads


def mlp_params(ffn: FFNSpec, hidden: int, width: int) -> int:
    """One MLP (or one expert) of the given width."""
    weights = ffn.matrices * hidden * width
    bias = (width * (ffn.matrices - 1) + hidden) if ffn.mlp_bias else 0
    return weights + bias


def count_parameters(model: ModelSpec) -> ParamCount:
    h = model.hidden_size
    norm_size = 2 * h if model.norm == "layernorm" else h  # LayerNorm has a bias
    attention = dense = routed = active_routed = norms = 0
    for group in model.layers:
        n, ffn = group.num_layers, group.ffn
        attention += n * attention_params(group.attention, h)
        norms += n * norm_size * (1 if group.parallel_attn_mlp else 2)
        if ffn.kind == "dense":
            dense += n * mlp_params(ffn, h, ffn.intermediate_size)
        else:
            router = h * ffn.num_experts
            shared = mlp_params(ffn, h, ffn.shared_expert_intermediate_size) if ffn.num_shared_experts else 0
            dense += n * (router + shared)
            per_expert = mlp_params(ffn, h, ffn.expert_intermediate_size)
            routed += n * ffn.num_experts * per_expert
            active_routed += n * ffn.num_experts_per_token * per_expert
    norms += norm_size  # final norm
    embedding = model.vocab_size * h
    lm_head = 0 if model.tie_word_embeddings else model.vocab_size * h + (model.vocab_size if model.lm_head_bias else 0)
    return ParamCount(embedding, lm_head, attention, dense, routed, active_routed, norms)
