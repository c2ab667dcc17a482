"""The operators of one decoder layer on one device, for one engine step.

An engine step processes a batch: some sequences prefill a chunk of `q_len` new tokens
over `kv_len` positions, others decode one token over their cached context. All of
them share the linear layers (one GEMM over all tokens of the step); attention is
costed per kind of sequence. Shapes are per device after tensor/expert parallelism.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from tokenfab.cost.attention import estimate_decode_attention, estimate_prefill_attention
from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.collectives import estimate_collective
from tokenfab.cost.elementwise import activation_bytes, estimate_elementwise, norm_bytes, rotary_bytes
from tokenfab.cost.gemm import estimate_gemm
from tokenfab.cost.linear_attention import estimate_dsa_indexer, estimate_linear_attention
from tokenfab.cost.moe import MoEShape, estimate_moe
from tokenfab.cost.onchip import NO_RESIDENCY, ResidencyPlan
from tokenfab.cost.result import OpCost, cost_record, revive_cost
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.moe_routing import model_routing
from tokenfab.hardware.spec import SystemSpec
from tokenfab.units import bytes_per_element
from tokenfab.workload.spec import AttentionSpec, FFNSpec, LayerGroup


# Bytes per hidden element of a token sent to the experts in FP8: one byte plus a 4-byte scale per 128 elements
# (per-token-group quantisation, the input DeepGEMM's grouped FP8 GEMMs take). DeepEP's low-latency dispatch
# always sends this; its normal dispatch does so when the experts run FP8 (SGLang quantises with
# per_token_group_quant_fp8 before dispatching); combine returns 16-bit rows either way.
FP8_DISPATCH_BYTES = 1.0 + 4.0 / 128
FP4_GATHER_BYTES = 0.5 + 1.0 / 16  # NVFP4: two elements a byte, one FP8 scale per 16 elements

# Query chunks up to this length over a longer cached context run MLA in the absorbed (decode) form,
# as vLLM's and SGLang's MLA backends do for speculative verify steps (FlashMLA packs the q tokens of a
# sequence as extra heads over one read of the latent cache); longer chunks decompress K/V (prefill form).
MLA_ABSORBED_MAX_Q = 16


def expert_input_dtype(cc: ChipCost, prec: PrecisionConfig) -> str:
    """Input (activation) format of the fused expert kernel: the GEMM format, except FP4 expert weights on a chip
    without an FP4 tensor-core rate, which every engine runs against 16-bit activations.

    Hopper has no FP4 MMA: TensorRT-LLM runs GPT-OSS's MXFP4 experts there as 'simulated mxfp4' on BF16 HGMMA
    (TRITON or CUTLASS MoE backend, bf16 activations); its FP8-activation x MXFP4 CUTLASS path is 'not enabled'
    (examples/models/core/gpt_oss/README.md, 'MoE Support Matrix'), and vLLM's Hopper MXFP4 MoE is the same
    W4A16 kind (Marlin / triton_kernels matmul_ogs). An `--dtype fp8 --weight-dtype fp4` run on such a chip
    would otherwise be costed as an FP8 x FP4 kernel at the FP8 tensor-core rate ('w4a8', cost.moe.moe_kind),
    which no engine has there. 4-bit integer weights keep their FP8 path (TensorRT-LLM's W4A8 AWQ on Hopper)."""
    if prec.weights == "fp4" and not cc.supports("fp4"):
        return prec.activations
    return prec.dtype

# How a model's tokens pick experts in a step: each token its top-k independently, so at small batches picks collide
# and fewer experts are read than there are picks. The microbenchmarks' 'balanced' round-robin gives every pick its
# own expert, the most weight traffic a step can have: a GPT-OSS-120B decode step of 32 tokens (128 top-4 picks over
# 128 experts) would read all 128 experts' weights, where uniform independent routing expects
# 128 x (1 - (1 - 4/128)^32) = 81.7. Skewed (real) popularity collides more still; uniform is the upper bound for
# independent routing (the expected count of distinct experts is concave in the pick probabilities). The skew is
# fitted on serving runs per model family (`execution.moe_routing`: 'zipf:S', or 'uniform' without a fit); the busiest
# EP rank's rows carry the spread of independent routing. MODEL_ROUTING is the global fit (a family without its own).
MODEL_ROUTING = model_routing()


@dataclass(slots=True, unsafe_hash=True)  # not frozen (never changed after it is made): see cost.result.OpCost
class StepBatch:
    """Work of one engine step on one data-parallel replica.

    `prefill` holds (num_sequences, q_len, kv_len) groups: sequences prefilling q_len new
    tokens over kv_len positions (kv_len - q_len already cached). `num_decode` sequences
    decode one token each over a mean of `decode_kv_len` cached positions.
    """

    prefill: tuple[tuple[int, int, int], ...] = ()
    num_decode: int = 0
    decode_kv_len: float = 0.0
    prefill_tokens: int = field(init=False, compare=False, hash=False)
    num_sequences: int = field(init=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        self.prefill_tokens = sum(n * q for n, q, _ in self.prefill)
        self.num_sequences = sum(n for n, _, _ in self.prefill) + self.num_decode

    @property
    def num_tokens(self) -> int:
        return self.prefill_tokens + self.num_decode


class LayerCoster:
    """Costs the operators of one layer group for a StepBatch (results are per layer, per device)."""

    def __init__(self, cc: ChipCost, system: SystemSpec, par: ParallelConfig, prec: PrecisionConfig, hidden: int,
                 routing: str | None = None):
        self.cc, self.system, self.par, self.prec, self.hidden = cc, system, par, prec, hidden
        self.act_bytes = bytes_per_element(prec.activations)
        self.kv_dtype, self.act_dtype = prec.kv, prec.activations
        self.expert_dtype = expert_input_dtype(cc, prec)  # input format of the fused expert kernel
        self.residency: ResidencyPlan = NO_RESIDENCY  # what the deployment holds on chip (set by StepModel)
        self.staggered_prefill = False  # attention-DP ranks prefill alone (serving), not all at once (set by StepModel)
        # the checkpoint stores attention 16-bit whatever the weight dtype (workload.weight_format.checkpoint_layout,
        # nvidia/DeepSeek-R1-FP4; set by StepModel from the layout the memory ledger counts)
        self.attention_16bit = False
        # stored bytes per routed-expert weight, block scales included (the checkpoint's format, e.g. MXFP4's
        # 4.25 bits; set by StepModel from the same layout); None: the weight dtype's default format
        self.expert_weight_bytes: float | None = None
        # memos of OpCosts as flat records (cost.result.cost_record: untracked by the garbage collector), or of the
        # OpCosts themselves under a chip cost that keys the objects it made by identity (ChipCost.keeps_cost_identity)
        self._gemm_cache: dict[tuple, tuple | OpCost] = {}
        self._comm_cache: dict[tuple, tuple | OpCost] = {}
        self._elem_cache: dict[tuple, tuple | OpCost] = {}
        # token distribution over experts (cost.moe.DISTRIBUTIONS): the model family's fitted one (StepModel passes it)
        self.routing = routing or model_routing()
        self._oneshot: bool | None = None  # whether the profile fits a one-shot all-reduce (on first use)

    def gemm(self, op: str, m: int, n: int, k: int, *, weights: bool = True, stored: bool | None = None,
             unquantized: bool = False) -> OpCost:
        """A GEMM against weights (quantised per the precision config) or between activations;
        `stored` (default: `weights`) says whether W is a stored weight (16-bit ones like the LM head
        included) that the deployment may hold on chip; `unquantized`: a weight the checkpoint keeps in
        16-bit (AttentionSpec.weights_quantized), run as a 16-bit GEMM."""
        stored = weights if stored is None else stored
        key = (op, m, n, k, weights, stored, unquantized)
        hit = self._gemm_cache.get(key)
        if hit is None:
            act = self.act_dtype if unquantized else self.prec.dtype
            w = self.act_dtype if unquantized or not weights else self.prec.weights
            return self._remember(self._gemm_cache, key, estimate_gemm(
                self.cc, m, n, k, act, w, op=op, weights_on_chip=stored and self.residency.weights_on_chip))
        return hit if type(hit) is OpCost else revive_cost(hit)

    def _remember(self, cache: dict, key: tuple, cost: OpCost) -> OpCost:
        """Store `cost` in one of the memos (as its record, see __init__) and return it."""
        cache[key] = cost if self.cc.keeps_cost_identity else cost_record(cost)
        return cost

    def attn_gemm(self, attn: AttentionSpec, op: str, m: int, n: int, k: int) -> OpCost:
        """An attention projection: in the linear-layer format unless the checkpoint keeps attention in 16-bit."""
        return self.gemm(op, m, n, k, unquantized=self.attention_16bit or not attn.weights_quantized)

    def elementwise(self, op: str, dram_bytes: float) -> OpCost:
        key = (op, dram_bytes)
        hit = self._elem_cache.get(key)
        if hit is None:
            return self._remember(self._elem_cache, key, estimate_elementwise(self.cc, op, dram_bytes))
        return hit if type(hit) is OpCost else revive_cost(hit)

    def collective(self, op: str, name: str, devices: int, message_bytes: float) -> OpCost | None:
        if devices <= 1 or message_bytes <= 0:
            return None
        key = (op, name, devices, message_bytes)
        hit = self._comm_cache.get(key)
        if hit is None:
            hit = estimate_collective(self.cc, self.system, name, devices, message_bytes, op=op)
            oneshot = self._oneshot
            if oneshot is None:  # asked once: the profile never changes
                oneshot = self._oneshot = self.cc.resolved.has_collective("all_reduce_oneshot")
            if name == "all_reduce" and oneshot and devices <= self.system.chips_per_node:
                alt = estimate_collective(self.cc, self.system, "all_reduce", devices, message_bytes, op=op,
                                          implementation="oneshot")
                hit = min(hit, alt, key=lambda c: c.time_s)
            return self._remember(self._comm_cache, key, hit)
        return hit if type(hit) is OpCost else revive_cost(hit)

    def layer_ops(self, group: LayerGroup, batch: StepBatch, with_core: bool = True) -> Iterator[OpCost]:
        """Every operator of one layer of `group` for `batch`; without the context-dependent
        attention core when `with_core` is False (see `core_attention_ops`)."""
        t, h = batch.num_tokens, self.hidden
        yield self.elementwise("norm", norm_bytes(t, h, self.act_bytes))
        yield from self.attention_ops(group.attention, batch, with_core)
        if not group.parallel_attn_mlp:
            yield from self._tp_allreduce(t)
            yield self.elementwise("norm", norm_bytes(t, h, self.act_bytes))
        if group.ffn.kind == "dense":
            yield from self.dense_ffn_ops(group.ffn, t)
        else:
            yield from self.moe_ops(group.ffn, t, expert_group_tokens(batch, self.par.dp, self.staggered_prefill))
        yield from self._tp_allreduce(t)

    def _tp_allreduce(self, tokens: int) -> Iterator[OpCost]:
        cost = self.collective("tp_allreduce", "all_reduce", self.par.tp, tokens * self.hidden * self.act_bytes)
        if cost is not None:
            yield cost

    def attention_ops(self, attn: AttentionSpec, batch: StepBatch, with_core: bool = True) -> Iterator[OpCost]:
        if attn.kind == "mla":
            yield from self._mla_ops(attn, batch, with_core)
            return
        if attn.kind == "linear":
            yield from self._linear_ops(attn, batch, with_core)
            return
        tp, t = self.par.tp, batch.num_tokens
        heads = attn.num_heads // tp
        kv_heads = max(1, attn.num_kv_heads // tp)
        q_width = heads * attn.head_dim * (2 if attn.output_gate else 1)  # gated attention projects the gate with q
        qkv_width = q_width + kv_heads * (attn.head_dim + attn.v_head_dim)
        yield self.attn_gemm(attn, "attn.qkv_proj", t, qkv_width, self.hidden)
        yield self.elementwise("attn.rotary", rotary_bytes(t, heads, kv_heads, attn.rotary_dim, self.act_bytes))
        if with_core:
            yield from self.core_attention_ops(attn, batch)
        yield self.attn_gemm(attn, "attn.o_proj", t, self.hidden, heads * attn.v_head_dim)

    def core_attention_ops(self, attn: AttentionSpec, batch: StepBatch) -> Iterator[OpCost]:
        """The operators whose cost depends on context lengths (the rest depends on token counts only,
        so a step model can cache it across steps that differ only in context)."""
        heads = attn.num_heads // self.par.tp
        if attn.kind == "mla":
            yield from self._mla_core_ops(attn, batch, heads)
            return
        if attn.kind == "linear":
            yield from self._linear_core_ops(attn, batch, heads)
            return
        kv_heads = max(1, attn.num_kv_heads // self.par.tp)
        for n, q, kv in batch.prefill:
            yield estimate_prefill_attention(self.cc, n, q, kv, heads, kv_heads, attn.head_dim, attn.v_head_dim,
                                             self.act_dtype, self.kv_dtype, window=attn.sliding_window_tokens,
                                             op="attn.core")
        if batch.num_decode:
            yield estimate_decode_attention(self.cc, batch.num_decode, batch.decode_kv_len, **self.decode_core_args(attn),
                                            op="attn.core", kv_on_chip=self._kv_on_chip(batch))

    def decode_core_args(self, attn: AttentionSpec) -> dict | None:
        """Arguments of the decode attention core of one layer (shared by the scalar and vectorised paths);
        None when the core is not one decode-attention kernel (linear attention; DSA's indexer + top-k core)."""
        if attn.kind == "linear" or attn.index_topk_tokens:
            return None
        heads = attn.num_heads // self.par.tp
        if attn.kind == "mla":
            kv_rank, rope = int(attn.kv_lora_rank), int(attn.qk_rope_head_dim or 0)
            return dict(num_heads=heads, num_kv_heads=1, head_dim=kv_rank + rope, v_head_dim=kv_rank,
                        kv_dtype=self.kv_dtype, latent_dim=kv_rank + rope, act_dtype=self.act_dtype)
        return dict(num_heads=heads, num_kv_heads=max(1, attn.num_kv_heads // self.par.tp), head_dim=attn.head_dim,
                    v_head_dim=attn.v_head_dim, kv_dtype=self.kv_dtype, window=attn.sliding_window_tokens,
                    act_dtype=self.act_dtype)

    def _mla_ops(self, attn: AttentionSpec, batch: StepBatch, with_core: bool) -> Iterator[OpCost]:
        """DeepSeek MLA: latent projections on all tokens; prefill decompresses K/V and runs MHA,
        decode absorbs the up-projections and attends in the latent space.

        With a query latent the query and KV down-projections read the same input and are one replicated
        GEMM of q_lora_rank + kv_lora_rank + rope columns in the engines (SGLang and vLLM
        `fused_qkv_a_proj_with_mqa` / `fused_qkv_a_proj`, TensorRT-LLM's fused `kv_a_proj_with_mqa`): one
        kernel and one read of the activations, not two."""
        tp, t, h = self.par.tp, batch.num_tokens, self.hidden
        heads = attn.num_heads // tp
        nope, rope, kv_rank = int(attn.qk_nope_head_dim), int(attn.qk_rope_head_dim or 0), int(attn.kv_lora_rank)
        qk = nope + rope
        if attn.q_lora_rank:
            yield self.attn_gemm(attn, "attn.qkv_down", t, attn.q_lora_rank + kv_rank + rope, h)
            yield self.attn_gemm(attn, "attn.q_up", t, heads * qk, attn.q_lora_rank)
        else:
            yield self.attn_gemm(attn, "attn.q_proj", t, heads * qk, h)
            yield self.attn_gemm(attn, "attn.kv_down", t, kv_rank + rope, h)
        yield self.elementwise("attn.rotary", rotary_bytes(t, heads, 1, rope, self.act_bytes))
        if batch.num_decode:
            b = batch.num_decode
            yield self.attn_gemm(attn, "attn.q_absorb", b, heads * kv_rank, nope)
            yield self.attn_gemm(attn, "attn.v_absorb", b, heads * attn.v_head_dim, kv_rank)
        if attn.index_head_dim:  # DSA indexer projections (replicated: one shared key, few heads)
            yield self.gemm("attn.indexer_proj", t, int(attn.index_num_heads or 1) * (attn.index_head_dim + 1) + attn.index_head_dim,
                            attn.q_lora_rank or h)
        if with_core:
            yield from self._mla_core_ops(attn, batch, heads)
        yield self.attn_gemm(attn, "attn.o_proj", t, h, heads * attn.v_head_dim)

    def _mla_core_ops(self, attn: AttentionSpec, batch: StepBatch, heads: int) -> Iterator[OpCost]:
        """MLA core; with DSA the core attends only the indexer's top-k tokens and the indexer scans the context."""
        nope, rope, kv_rank = int(attn.qk_nope_head_dim), int(attn.qk_rope_head_dim or 0), int(attn.kv_lora_rank)
        topk = attn.index_topk_tokens
        for n, q, kv in batch.prefill:
            if q <= MLA_ABSORBED_MAX_Q < kv:  # speculative verify: absorbed like decode, q tokens packed as heads
                yield self.attn_gemm(attn, "attn.q_absorb", n * q, heads * kv_rank, nope)
                yield self.attn_gemm(attn, "attn.v_absorb", n * q, heads * attn.v_head_dim, kv_rank)
                yield estimate_decode_attention(self.cc, n, float(kv), heads * q, 1, kv_rank + rope, kv_rank, self.kv_dtype,
                                                window=topk, latent_dim=kv_rank + rope, op="attn.core",
                                                act_dtype=self.act_dtype)
                if topk:
                    yield estimate_dsa_indexer(self.cc, n, q, kv, int(attn.index_num_heads or 1), int(attn.index_head_dim),
                                               self.kv_dtype)
                continue
            yield self.attn_gemm(attn, "attn.kv_up", n * kv, heads * (nope + attn.v_head_dim), kv_rank)
            yield estimate_prefill_attention(self.cc, n, q, kv, heads, heads, nope + rope, attn.v_head_dim,
                                             self.act_dtype, self.act_dtype, window=topk, op="attn.core")
            if topk:
                yield estimate_dsa_indexer(self.cc, n, q, kv, int(attn.index_num_heads or 1), int(attn.index_head_dim),
                                           self.kv_dtype)
        if batch.num_decode:
            yield estimate_decode_attention(self.cc, batch.num_decode, batch.decode_kv_len, heads, 1, kv_rank + rope,
                                            kv_rank, self.kv_dtype, window=topk, latent_dim=kv_rank + rope,
                                            op="attn.core", act_dtype=self.act_dtype, kv_on_chip=self._kv_on_chip(batch))
            if topk:
                yield estimate_dsa_indexer(self.cc, batch.num_decode, 1, batch.decode_kv_len,
                                           int(attn.index_num_heads or 1), int(attn.index_head_dim), self.kv_dtype)

    def _linear_ops(self, attn: AttentionSpec, batch: StepBatch, with_core: bool) -> Iterator[OpCost]:
        """Gated DeltaNet: fused in-projection (q, k, v, output gate z, beta, alpha), causal conv, the
        recurrent core, gated RMSNorm, out-projection. Heads split over TP like attention heads."""
        tp, t = self.par.tp, batch.num_tokens
        heads, key_heads = attn.num_heads // tp, max(1, attn.num_kv_heads // tp)
        key_dim, value_dim = key_heads * attn.head_dim, heads * attn.v_head_dim
        yield self.attn_gemm(attn, "attn.linear_in_proj", t, 2 * key_dim + 2 * value_dim + 2 * heads, self.hidden)
        conv = (2 * key_dim + value_dim) * max(1, attn.conv_kernel_size)
        yield self.elementwise("attn.linear_conv", t * (2 * key_dim + value_dim) * 2.0 * self.act_bytes + conv * 2.0)
        if with_core:
            yield from self._linear_core_ops(attn, batch, heads)
        yield self.elementwise("attn.linear_norm", t * value_dim * 3.0 * self.act_bytes)
        yield self.attn_gemm(attn, "attn.o_proj", t, self.hidden, value_dim)

    def _linear_core_ops(self, attn: AttentionSpec, batch: StepBatch, heads: int) -> Iterator[OpCost]:
        key_heads = max(1, attn.num_kv_heads // self.par.tp)
        for n, q, _kv in batch.prefill:
            yield estimate_linear_attention(self.cc, "prefill", n, q, heads, key_heads, attn.head_dim, attn.v_head_dim,
                                            self.act_dtype, op="attn.core")
        if batch.num_decode:
            yield estimate_linear_attention(self.cc, "decode", batch.num_decode, 1, heads, key_heads, attn.head_dim,
                                            attn.v_head_dim, self.act_dtype, op="attn.core")

    def _kv_on_chip(self, batch: StepBatch) -> bool:
        """Whether the decode sequences' KV cache (all layers of the stage) is held on chip."""
        return self.residency.kv_on_chip(batch.num_decode * batch.decode_kv_len)

    def dense_ffn_ops(self, ffn: FFNSpec, tokens: int, width: int | None = None, prefix: str = "mlp") -> Iterator[OpCost]:
        width = (width if width is not None else ffn.intermediate_size) // self.par.tp
        up = 2 * width if ffn.gated else width
        yield self.gemm(f"{prefix}.up_proj", tokens, up, self.hidden)
        yield self.elementwise(f"{prefix}.act", activation_bytes(tokens, width, self.act_bytes, ffn.gated))
        yield self.gemm(f"{prefix}.down_proj", tokens, self.hidden, width)

    def moe_ops(self, ffn: FFNSpec, tokens: int, group_tokens: int | None = None) -> Iterator[OpCost]:
        """Router GEMM on this rank's tokens; token dispatch where tokens move; the fused routed-expert
        kernel on the busiest device over the `group_tokens` all dp ranks route (default tokens x dp, see
        `expert_group_tokens`); combine; shared experts (tensor-parallel like a dense MLP).

        Top-k selection is not a separate op: the fused kernel's fit includes it (ops_moe.csv times
        TensorRT-LLM's MoE module forward from router logits, whose routing method runs the top-k inside),
        and `cost.moe.moe_work` counts the router scores it reads."""
        yield self.router(ffn, tokens)
        dispatch, combine = self.token_exchange(ffn, tokens, group_tokens)
        if dispatch is not None:
            yield dispatch
        yield self.routed_experts(ffn, tokens * self.par.dp if group_tokens is None else group_tokens)
        if combine is not None:
            yield combine
        if ffn.num_shared_experts:
            yield from self.dense_ffn_ops(ffn, tokens, ffn.shared_expert_intermediate_size, prefix="moe.shared")

    def router(self, ffn: FFNSpec, tokens: int) -> OpCost:
        """The gate GEMM (tokens x hidden -> expert logits) in the 16-bit activation format, whatever the
        linear layers' format: quantised MoE checkpoints leave the router unquantised (the bundled GPT-OSS
        config's quantization_config lists `model.layers.*.mlp.router` in modules_to_not_convert), since
        routing decisions are sensitive to logit precision."""
        key = ("moe.router", tokens)
        hit = self._gemm_cache.get(key)
        if hit is None:
            return self._remember(self._gemm_cache, key, estimate_gemm(
                self.cc, tokens, ffn.num_experts, self.hidden, self.act_dtype, self.act_dtype, op="moe.router"))
        return hit if type(hit) is OpCost else revive_cost(hit)

    def routed_experts(self, ffn: FFNSpec, group_tokens: int) -> OpCost:
        """The fused expert kernel over the tokens of all dp ranks (they meet in the expert groups)."""
        par = self.par
        key = ("moe.experts", group_tokens)
        hit = self._gemm_cache.get(key)
        if hit is None:
            shape = MoEShape(group_tokens, self.hidden, ffn.expert_intermediate_size, ffn.num_experts_per_token,
                             ffn.num_experts, par.expert_tp, par.ep, ffn.gated, self.routing, par.num_redundant_experts)
            return self._remember(self._gemm_cache, key, estimate_moe(self.cc, shape, self.expert_dtype, self.prec.weights,
                                                                      weight_bytes_per_element=self.expert_weight_bytes))
        return hit if type(hit) is OpCost else revive_cost(hit)

    def token_exchange(self, ffn: FFNSpec, tokens: int, group_tokens: int | None = None) -> tuple[OpCost | None, OpCost | None]:
        """(dispatch, combine) per device, or (None, None) when no token moves.

        With dp = 1 every device already holds every token (attention ends in a TP all-reduce), so each
        device runs its experts on the rows routed to them and the layer's closing all-reduce sums the
        partial outputs: no all-to-all. With dp > 1 each rank's tokens must reach the expert groups
        of other ranks: an all-gather / reduce-scatter among the dp ranks when ep = 1 (experts split
        by MoE-TP over everyone), else an all-to-all among the tp x dp devices carrying each token to
        every device of each expert group it picks (DeepEP 'normal': once per group in the activation
        format; 'low-latency': one fp8 copy per token-expert pair), or with 'allgather' the all-gather /
        reduce-scatter of the `group_tokens` all ranks route (default tokens x dp).
        """
        return moe_token_exchange(self, ffn, tokens, tokens * self.par.dp if group_tokens is None else group_tokens)


def expert_group_tokens(batch: StepBatch, dp: int, staggered_prefill: bool) -> int:
    """Tokens the expert groups process in a step of one attention-DP rank (all dp ranks meet in every MoE
    layer, each rank taken to carry the same decode load as this one).

    A static batch (`predict`) splits its requests over the ranks, which all prefill at once: dp x the step's
    tokens. Under serving traffic (`staggered_prefill`) a prompt is prefilled by the one rank its request was
    routed to while the others decode: this rank's prefill tokens plus dp x its decodes. Charging every
    rank's chunk to all of them cost a 64-rank DeepSeek deployment 64 x 8k tokens of experts per 8k prompt.
    With dp = 1, and in decode-only steps, both are the same count."""
    if staggered_prefill:
        return batch.prefill_tokens + dp * batch.num_decode
    return dp * batch.num_tokens


def moe_token_exchange(coster: LayerCoster, ffn: FFNSpec, tokens: int, group_tokens: int) -> tuple[OpCost | None, OpCost | None]:
    """See `LayerCoster.token_exchange`; message sizes follow NCCL's convention (total send buffer).

    The gather moves the `group_tokens` of all ranks (allgatherv of each rank's own count, as TensorRT-LLM
    gathers without DP padding), FP4 models in their quantised form: TensorRT-LLM all-gathers NVFP4
    activations (half a byte plus an FP8 scale per 16 elements) and reduce-scatters 16-bit outputs
    (`fused_moe_wide_ep.py`: all-to-all only with MNNVL or TRTLLM_CAN_USE_DEEP_EP, else allgather)."""
    par, h = coster.par, coster.hidden
    if not par.tokens_move or tokens <= 0:
        return None, None
    k, group = ffn.num_experts_per_token, par.tp * par.dp
    act = coster.act_bytes
    if par.ep == 1 or par.moe_dispatch == "allgather":
        width = FP4_GATHER_BYTES if coster.prec.dtype == "fp4" and par.moe_dispatch == "allgather" else act
        return (coster.collective("moe.dispatch", "all_gather", par.dp, group_tokens * h * width),
                coster.collective("moe.combine", "reduce_scatter", par.dp, group_tokens * h * 2.0))
    share = tokens / par.tp  # the tp devices of a rank split the sending of its tokens
    if par.moe_dispatch == "low-latency":
        pairs = share * k * par.expert_tp
        send, back = pairs * h * FP8_DISPATCH_BYTES, pairs * h * 2.0
    else:
        groups_hit = par.ep * (1.0 - (1.0 - 1.0 / par.ep) ** k)  # distinct expert groups a token picks
        rows = share * groups_hit * par.expert_tp
        width = FP8_DISPATCH_BYTES if coster.expert_dtype == "fp8" else act
        send, back = rows * h * width, rows * h * 2.0
    return (coster.collective("moe.dispatch", "all_to_all", group, send),
            coster.collective("moe.combine", "all_to_all", group, back))
