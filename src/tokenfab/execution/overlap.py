"""Two-batch overlap (TBO) of MoE steps: the step's batch runs as two micro-batches whose expert all-to-all
hides under the other's compute.

What is modelled is SGLang's `--enable-two-batch-overlap` (sgl-project/sglang, `python/sglang/srt/two_batch_overlap.py`
and `operations_strategy.py`, v0.4.7+, as used by the LMSYS blog "Deploying DeepSeek with PD Disaggregation and
Large-Scale Expert Parallelism on 96 H100 GPUs", https://lmsys.org/blog/2025-05-05-large-scale-ep/), the scheme
DeepSeek's inference-system overview describes (https://github.com/deepseek-ai/open-infra-index, "Day 6: One More
Thing, DeepSeek-V3/R1 Inference System Overview": prefill runs two micro-batches, one's dispatch/combine hidden under
the other's attention and MoE compute) over DeepEP's normal and low-latency kernels:

- The split (`split_two`): decode sequences are halved (`compute_split_seq_index`, decode: num_tokens // 2); prefill
  sequences are split at the index that halves their token sum (`_split_array_by_half_sum`), and a lone prefill
  sequence is split at its middle token (`compute_split_token_index`), the second half attending over the whole
  context. A step one of whose halves would be empty runs without TBO, as SGLang falls back when the split index is
  0 or num_tokens.
- Every operator runs once per micro-batch on half the tokens (smaller GEMMs at lower efficiency, each kernel's fixed
  cost paid twice): the costs come from the same `LayerCoster` calls the plain step makes, on each half.
- Per layer and micro-batch the work is pre (norms, attention, router), dispatch, routed experts, combine, post
  (shared experts and the closing all-reduce). SGLang's prefill strategy (`_compute_moe_deepseek_blog_prefill`,
  tbo_delta_stages = 0, yields after dispatch_a and combine_a) issues the compute stream in the order A.pre, B.pre,
  A.experts, B.experts, then A.post with A's next layer, then B's; the all-to-alls run on the communication resource
  (DeepEP's own SMs / the NICs) in issue order. `tbo_makespan` is the critical path of that two-resource pipeline
  across all layers of the stage, not the sum.

Not modelled: the SMs DeepEP reserves from the GEMMs while it communicates (SGLang's deep_gemm_num_sms), and the
decode strategy's two-stage lead (tbo_delta_stages = 2), which reorders but does not change the two resources' sums.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tokenfab.cost.result import OpCost
from tokenfab.execution.layers import StepBatch

DISPATCH_OP, COMBINE_OP = "moe.dispatch", "moe.combine"
EXPERTS_OP = "moe.experts"


@dataclass(slots=True)
class LayerStages:
    """Seconds of one layer of one micro-batch, by the resource and order that TBO schedules them in."""

    pre_s: float = 0.0  # compute before the dispatch: norms, attention, router (a dense FFN too)
    dispatch_s: float = 0.0  # communication
    experts_s: float = 0.0  # compute: the routed-expert kernel
    combine_s: float = 0.0  # communication
    post_s: float = 0.0  # compute after the experts: shared experts, closing all-reduce

    @property
    def compute_s(self) -> float:
        return self.pre_s + self.experts_s + self.post_s

    @property
    def comm_s(self) -> float:
        return self.dispatch_s + self.combine_s


def layer_stages(ops: Iterable[OpCost]) -> LayerStages:
    """Sort one layer's operators (in `LayerCoster.layer_ops` order) into TBO stages: everything before the
    dispatch is pre, the routed experts are experts, what follows them is post; a layer without an exchange
    (dense FFN, or no token moving) is all compute."""
    st = LayerStages()
    seen_experts = False
    for cost in ops:
        if cost.op == DISPATCH_OP:
            st.dispatch_s += cost.time_s
        elif cost.op == COMBINE_OP:
            st.combine_s += cost.time_s
        elif cost.op == EXPERTS_OP:
            st.experts_s += cost.time_s
            seen_experts = True
        elif seen_experts:
            st.post_s += cost.time_s
        else:
            st.pre_s += cost.time_s
    return st


def tbo_makespan(layers: Sequence[tuple[LayerStages, LayerStages]]) -> float:
    """Critical path of the two micro-batches (a, b) through `layers` on one compute stream and one
    communication resource, each serving its work in SGLang's issue order (see the module docstring).

    It is never below either resource's total and never above all work run back to back: a resource waits only
    while the other runs the work it depends on."""
    t = c = 0.0  # when the compute stream / the communication resource is next free
    a_ready = b_ready = 0.0  # when each micro-batch's previous layer output exists (its combine landed, post done)
    b_post = 0.0  # B's post of the previous layer, issued after A's next pre
    b_comb_end = 0.0
    for a, b in layers:
        t = max(t, a_ready) + a.pre_s
        c = max(c, t) + a.dispatch_s
        a_disp_end = c
        t += b_post
        b_ready = max(t, b_comb_end)
        t = max(t, b_ready) + b.pre_s
        c = max(c, t) + b.dispatch_s
        b_disp_end = c
        t = max(t, a_disp_end) + a.experts_s
        c = max(c, t) + a.combine_s
        a_comb_end = c
        t = max(t, b_disp_end) + b.experts_s
        c = max(c, t) + b.combine_s
        b_comb_end = c
        t += a.post_s
        a_ready = max(t, a_comb_end)
        b_post = b.post_s
    t = max(t, a_ready) + b_post
    return max(t, a_ready, b_comb_end)


def split_two(batch: StepBatch) -> tuple[StepBatch, StepBatch] | None:
    """The two micro-batches SGLang runs for `batch`, or None when one would be empty (no overlap then)."""
    seqs = [(q, kv) for n, q, kv in batch.prefill for _ in range(n)]
    half = batch.num_decode // 2
    dec_a, dec_b = batch.num_decode - half, half
    if len(seqs) == 1 and seqs[0][0] >= 2:  # one long prompt: split at its middle token
        q, kv = seqs[0]
        first = q - q // 2
        pre_a, pre_b = [(first, kv - q // 2)], [(q // 2, kv)]
    else:
        cut = _half_sum_index([q for q, _ in seqs])
        pre_a, pre_b = seqs[:cut], seqs[cut:]
    a = StepBatch(_groups(pre_a), dec_a, batch.decode_kv_len if dec_a else 0.0)
    b = StepBatch(_groups(pre_b), dec_b, batch.decode_kv_len if dec_b else 0.0)
    if a.num_tokens == 0 or b.num_tokens == 0:
        return None
    return a, b


def _half_sum_index(lengths: list[int]) -> int:
    """The index splitting `lengths` into two runs whose sums are closest to half the total (SGLang's
    `_split_array_by_half_sum`)."""
    total, run = sum(lengths), 0
    best, best_gap = 0, float("inf")
    for i, q in enumerate(lengths):
        run += q
        gap = abs(total - 2 * run)
        if gap < best_gap and i + 1 < len(lengths):
            best, best_gap = i + 1, gap
    return best


def _groups(seqs: list[tuple[int, int]]) -> tuple[tuple[int, int, int], ...]:
    """(n, q_len, kv_len) groups of a list of (q_len, kv_len) sequences, in first-seen order."""
    counts: dict[tuple[int, int], int] = {}
    for s in seqs:
        counts[s] = counts.get(s, 0) + 1
    return tuple((n, q, kv) for (q, kv), n in counts.items())
