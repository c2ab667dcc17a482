"""Speculative decoding: a cheap drafter proposes k tokens, the target model verifies them in one step.

One speculative iteration of `n` sequences at context `ctx`:

1. Draft: k sequential single-token steps of the drafter (a separate small model for
   'draft'; one extra decoder layer plus the shared LM head for 'eagle' and 'mtp', as in
   EAGLE and DeepSeek-V3's multi-token-prediction module).
2. Verify: one target step over k + 1 tokens per sequence, i.e. a StepBatch prefill group
   (n, k + 1, ctx + k + 1) through `StepModel.step`.

Acceptance is a chain: drafted token i survives only if tokens 1..i all did, each with
probability A, so the expected tokens emitted per iteration are 1 + sum_{i=1..k} A^i
(the +1 is the target's own token at the first rejection, or the bonus token after k
accepted). This is the standard analysis of Leviathan et al. 2023 (arXiv:2211.17192, eq. 1).

Batching interaction needs no extra term: a verify step of n (k + 1) tokens is memory bound
(about the cost of a decode step) at small n and compute bound at large n, where it costs
about k + 1 decode steps; so the gain shrinks as batches grow and can turn into a loss.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.memory import MemoryModel
from tokenfab.execution.step import StepModel
from tokenfab.units import bytes_per_element
from tokenfab.workload.spec import LayerGroup, ModelSpec

SpecMethod = Literal["draft", "eagle", "mtp"]
SPEC_METHODS: tuple[str, ...] = ("draft", "eagle", "mtp")


@dataclass(frozen=True, slots=True)
class AcceptanceDefault:
    """A published per-token acceptance rate and where it comes from."""

    acceptance_frac: float
    source: str


# DeepSeek-V3 Technical Report (arXiv:2412.19437), section 5.4.3: "the acceptance rate of the second
# token prediction ranges between 85% and 90% across various generation topics ... 1.8 times TPS".
# The low end is the default (a prediction should not lean on the best case).
MTP_DEFAULTS: dict[str, AcceptanceDefault] = {
    "deepseek_v3": AcceptanceDefault(0.85, "https://arxiv.org/abs/2412.19437 (sec. 5.4.3: 85-90% for the 2nd token)"),
}


class SpeculativeSpec(BaseModel):
    """How decoding speculates (the `--spec-*` flags)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: SpecMethod = Field(description="'draft': a separate draft model; 'eagle': one-layer EAGLE head; 'mtp': the model's MTP layer.")
    num_spec_tokens: int = Field(ge=1, le=16, description="Tokens drafted per iteration (k).")
    acceptance_frac: float = Field(ge=0.0, le=1.0, description="Probability that each drafted token is accepted, given its predecessors were.")
    draft_model: str | None = Field(default=None, description="Bundled name or config path of the draft model (method 'draft' only).")
    acceptance_source: str = Field(default="user", description="'user' or the publication the default acceptance comes from.")


def resolve_spec(model: ModelSpec, method: str, num_spec_tokens: int, acceptance_frac: float | None,
                 draft_model: str | None = None) -> SpeculativeSpec:
    """Validate the flags; fill the acceptance from a published model default when none is given."""
    if method not in SPEC_METHODS:
        raise UnknownNameError("speculative method", method, SPEC_METHODS)
    if method == "draft" and not draft_model:
        raise InvalidInputError("--spec-method draft needs --spec-draft-model (a bundled model name or config.json)")
    if method != "draft" and draft_model:
        raise InvalidInputError(f"--spec-draft-model applies to --spec-method draft only, not {method}")
    if method == "mtp" and model.num_mtp_layers == 0:
        raise InvalidInputError(f"{model.name} has no multi-token-prediction layer (num_nextn_predict_layers 0); use eagle or draft")
    source = "user"
    if acceptance_frac is None:
        default = MTP_DEFAULTS.get(model.family) if method == "mtp" else None
        if default is None:
            known = ", ".join(sorted(MTP_DEFAULTS))
            raise InvalidInputError(
                f"no published acceptance rate for {method} on {model.name}; pass --spec-acceptance A "
                f"(published MTP defaults exist for model families: {known})")
        acceptance_frac, source = default.acceptance_frac, default.source
    if not 0.0 <= acceptance_frac <= 1.0:
        raise InvalidInputError(f"--spec-acceptance must lie in [0, 1], got {acceptance_frac}")
    return SpeculativeSpec(method=method, num_spec_tokens=num_spec_tokens, acceptance_frac=acceptance_frac,
                           draft_model=draft_model, acceptance_source=source)


def expected_tokens_per_iteration(acceptance_frac: float, num_spec_tokens: int) -> float:
    """1 + sum_{i=1..k} A^i: tokens one verify step emits per sequence (between 1 and k + 1)."""
    a, k = acceptance_frac, num_spec_tokens
    return float(sum(a ** i for i in range(k + 1)))


def sample_tokens_per_iteration(rng: np.random.Generator, acceptance_frac: float, num_spec_tokens: int,
                                size: int) -> np.ndarray:
    """Tokens each of `size` sequences emits in one verify step, drawn from the acceptance chain: the first
    rejected draft position j (P = A^j (1 - A) for j < k; all k accepted with P = A^k) gives j + 1 tokens.
    For a simulator that advances sequences individually; the mean is `expected_tokens_per_iteration`."""
    accepted = rng.geometric(1.0 - acceptance_frac, size) - 1 if acceptance_frac < 1.0 else np.full(size, num_spec_tokens)
    return np.minimum(accepted, num_spec_tokens) + 1


def head_model(model: ModelSpec) -> ModelSpec:
    """The drafter of EAGLE / MTP: one decoder layer shaped like the target's last layer, sharing its
    embedding and LM head (EAGLE, arXiv:2401.15077 sec. 4; DeepSeek-V3 MTP module, sec. 2.2)."""
    last = model.layers[-1]
    return model.model_copy(update={"name": f"{model.name}-spec-head", "num_mtp_layers": 0,
                                    "layers": (LayerGroup(num_layers=1, attention=last.attention, ffn=last.ffn,
                                                          parallel_attn_mlp=last.parallel_attn_mlp),)})


class SpeculativeModel:
    """Target and drafter step models of one deployment, and the cost of one speculative iteration."""

    def __init__(self, target: StepModel, spec: SpeculativeSpec, draft: ModelSpec | None = None):
        """`draft` is the draft model's spec for method 'draft' (ignored otherwise)."""
        self.target, self.spec = target, spec
        if spec.method == "draft":
            if draft is None:
                raise InvalidInputError("speculative method 'draft' needs a draft model spec")
            if draft.vocab_size != target.model.vocab_size:
                raise InvalidInputError(
                    f"draft model {draft.name} has vocabulary {draft.vocab_size}, the target {target.model.name} "
                    f"{target.model.vocab_size}: a draft must share the target's tokenizer")
            drafter = draft
        else:
            drafter = head_model(target.model)
        self.drafter_spec = drafter
        self.drafter = StepModel(drafter, target.system, target.par, target.prec)
        self.tokens_per_iteration = expected_tokens_per_iteration(spec.acceptance_frac, spec.num_spec_tokens)

    def iteration(self, num_seqs: int, ctx: float) -> tuple[float, float, float]:
        """(time_s, energy_j, tokens_per_seq) of one draft-and-verify iteration of `num_seqs` sequences
        whose context before the iteration is `ctx` tokens."""
        k = self.spec.num_spec_tokens
        draft_t = draft_e = 0.0
        for i in range(k):
            t, e = self.drafter.time_energy(StepBatch(num_decode=num_seqs, decode_kv_len=float(ctx + i)))
            draft_t += t
            draft_e += e
        c = int(round(ctx))
        verify = self.target.time_energy(StepBatch(prefill=((num_seqs, k + 1, c + k + 1),)))
        logits_t, logits_e = self.extra_logits(num_seqs)
        return draft_t + verify[0] + logits_t, draft_e + verify[1] + logits_e, self.tokens_per_iteration

    def extra_logits(self, num_seqs: int) -> tuple[float, float]:
        """(time, energy) of the LM head and sampling for the k verified positions beyond the one a
        prefill step computes: verification needs the target's logits at every drafted position."""
        k = self.spec.num_spec_tokens
        one, all_ = self.target.head_part(num_seqs), self.target.head_part(num_seqs * (k + 1))
        n = self.target.par.num_devices
        return all_.time_s - one.time_s, (all_.busy_energy_j - one.busy_energy_j) * n

    def extra_weights_bytes(self) -> float:
        """Weights the drafter adds per device: a whole draft model, or one layer (embedding and LM head shared)."""
        mm = MemoryModel(self.drafter_spec, self.target.system, self.target.par, self.target.prec)
        if self.spec.method == "draft":
            return mm.weights_bytes
        m, par = self.drafter_spec, self.target.par
        head = m.vocab_size * m.hidden_size / par.tp * bytes_per_element(self.target.prec.activations)
        shared = head if (m.tie_word_embeddings or par.pp > 1) else 2 * head
        return max(0.0, mm.weights_bytes - shared)

    def extra_kv_bytes_per_token(self) -> float:
        """KV the drafter caches per token of context (its own layers)."""
        mm = MemoryModel(self.drafter_spec, self.target.system, self.target.par, self.target.prec)
        return mm.kv_bytes_per_token


def speculative_iteration(step_model: StepModel, spec: SpeculativeSpec, num_seqs: int, ctx: float,
                          draft: ModelSpec | None = None) -> tuple[float, float, float]:
    """(time_s, energy_j, tokens_per_seq) of one speculative iteration: the serving simulator's entry point.

    A decode iteration of `num_seqs` sequences at context `ctx` is replaced by k draft steps and one
    verify step; each sequence then advances by `tokens_per_seq` tokens on average (fractional: the
    expectation of the acceptance chain). The step models are cached per (deployment, spec).
    """
    return _speculative_model(step_model, spec, draft).iteration(num_seqs, ctx)


@functools.lru_cache(maxsize=64)
def _speculative_model(step_model: StepModel, spec: SpeculativeSpec, draft: ModelSpec | None) -> SpeculativeModel:
    return SpeculativeModel(step_model, spec, draft)
