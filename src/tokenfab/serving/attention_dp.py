"""Attention-DP context balancing: when the ranks of one attention-DP instance may start their prompts.

The ranks of an attention-DP instance share the experts, so every rank runs every iteration and a context
(prefill) iteration on one rank stalls the others' decodes. TensorRT-LLM therefore can hold context requests
back until every rank has one (`attention_dp_config.enable_balance`; off by default in `llm_args.py`
AttentionDpConfig, on with timeout_iters 60, batching_wait_iters 0 in NVIDIA's DeepSeek-R1 serving recipes).
Its rule, PyExecutor._balance_adp_requests (TensorRT-LLM 1.0-1.2, `tensorrt_llm/_torch/pyexecutor/py_executor.py`),
evaluated each iteration on the counts all ranks all-gather:

- every rank has a context request and a free slot: the wait counter resets; if every rank also has generation
  requests the prompts wait up to `batching_wait_iters` more iterations (to batch more of them), else they run;
- otherwise the wait counter grows by one and the prompts wait, unless it reached `timeout_iters` or some rank
  has no generation request (then they run and the counter resets).

The counter grows in every unbalanced iteration, whether or not any rank has a prompt, so under unbalanced
arrivals prompts start on a cycle of `timeout_iters` iterations. Here every rank is its own replica: each rank
counts its own iterations (the ranks step at about the same rate), and a balanced moment, seen when a prompt is
queued, resets every rank's counter and releases the waiting ranks. The ranks share iteration boundaries
(`Simulation._start_rank`): prompts starting on one rank start on every rank that has some, and restart every
rank's counter (`BalanceGate.restart`), as TensorRT-LLM's one decision on all-gathered counts does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from tokenfab.errors import InvalidInputError

SOURCE = ("TensorRT-LLM 1.0-1.2 tensorrt_llm/_torch/pyexecutor/py_executor.py PyExecutor._balance_adp_requests; "
          "tensorrt_llm/llmapi/llm_args.py AttentionDpConfig (enable_balance False, timeout_iters 50, "
          "batching_wait_iters 10 by default)")


class AttentionDpBalance(BaseModel):
    """TensorRT-LLM's `attention_dp_config` with enable_balance on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_iters: int = Field(ge=1, le=1_000_000, description="Iterations prompts wait for every rank to have one "
                                                               "(TensorRT-LLM timeout_iters).")
    batching_wait_iters: int = Field(default=0, ge=0, le=1_000_000,
                                     description="Iterations balanced prompts wait to batch more of them "
                                                 "(TensorRT-LLM batching_wait_iters).")


def parse_balance(timeout_iters: int, batching_wait_iters: int) -> AttentionDpBalance | None:
    """The balance setting of `simulate`'s adp_timeout_iters / adp_batching_wait_iters (None: balance off)."""
    if timeout_iters < 0 or batching_wait_iters < 0:
        raise InvalidInputError(f"attention-DP balance iterations must be >= 0 (got timeout {timeout_iters}, "
                                f"batching wait {batching_wait_iters}); 0 timeout iterations: balance off")
    if timeout_iters == 0:
        if batching_wait_iters:
            raise InvalidInputError("--adp-batching-wait-iters needs attention-DP balance on (--adp-timeout-iters >= 1)")
        return None
    return AttentionDpBalance(timeout_iters=timeout_iters, batching_wait_iters=batching_wait_iters)


@dataclass(slots=True)
class BalanceGate:
    """The balance state of one attention-DP instance, shared by its ranks (replicas)."""

    setting: AttentionDpBalance
    ranks: list = field(default_factory=list)  # the instance's Replica objects
    cycle_start: dict[int, int] = field(default_factory=dict)  # rank index -> its iteration count at the last reset
    release_at: dict[int, int] = field(default_factory=dict)  # rank index -> iteration its balanced prompts may start

    def attach(self, rank) -> None:
        self.ranks.append(rank)
        self.cycle_start[rank.index] = 0
        rank.gate = self

    def admits(self, rank) -> bool:
        """May `rank` (which has waiting prompts) admit them in the iteration it plans now? When not, it
        sets `rank.hold_iters`: the most iterations the rank may run before it asks again."""
        i, g = rank.index, rank.g
        at = self.release_at.get(i)
        if at is not None:
            if g >= at:
                del self.release_at[i]
                return True
            rank.hold_iters = at - g
            return False
        if not all([r.num_decode for r in self.ranks]):  # a rank without generation requests: nothing to protect
            return True
        period = self.setting.timeout_iters
        done = (g - self.cycle_start[i]) % period
        if done == 0 and g > self.cycle_start[i]:  # the counter reached the timeout in this iteration
            self.cycle_start[i] = g
            return True
        rank.hold_iters = period - done
        return False

    def restart(self) -> None:
        """Prompts started on one rank of a lock-step instance (`Simulation._start_rank`), and so on every rank that
        has some: TensorRT-LLM's one wait counter restarts, which here is every rank's own count."""
        for r in self.ranks:
            self.cycle_start[r.index] = r.g

    def balanced(self) -> list:
        """A prompt was just queued: if every rank now has one waiting, the counters reset and the waiting
        ranks are released (after `batching_wait_iters` when every rank is also decoding). Returns the ranks
        whose current work should end at its next iteration boundary so that they can start."""
        ranks = self.ranks
        if not all([len(r.waiting) for r in ranks]):
            return []
        wait = self.setting.batching_wait_iters if all([r.num_decode for r in ranks]) else 0
        for r in ranks:
            self.cycle_start[r.index] = r.g
            self.release_at[r.index] = r.g + wait
        return ranks if wait == 0 else []


@dataclass(slots=True)
class LockstepTimer:
    """A step time for one rank of an attention-DP instance whose ranks meet in every MoE layer.

    A rank prefilling alone sends only its own prompt through the experts (`alone`: the staggered costing,
    `execution.layers.expert_group_tokens`); when its siblings prefill in the same iterations, as the ranks of a
    loaded context (P/D prefill) pool do, or of a balanced TensorRT-LLM instance released together, the experts
    and the token exchange carry every rank's prompt (`together`: all dp ranks prefill alike). The rank's step is
    costed between the two in proportion to the siblings that are in a prefill iteration when it starts (each
    taken to prefill as much as this rank). Decode-only steps are the same either way."""

    alone: Callable  # StepTimer.step of the staggered costing
    together: Callable  # StepTimer.step with every rank prefilling alike
    decode_pair: Callable  # StepTimer.decode_pair (the same either way)
    ranks: list = field(default_factory=list)  # this instance's Replica objects (joined by the simulation)

    def join(self, rank) -> None:
        self.ranks.append(rank)

    def step(self, prefill: tuple, num_decode: int, decode_kv_len: float) -> tuple[float, float]:
        t, e = self.alone(prefill, num_decode, decode_kv_len)
        others = len(self.ranks) - 1
        if not prefill or others <= 0:
            return t, e
        busy = sum([1 for r in self.ranks if r.work is not None and r.work.chunks])  # the caller's own work is unset
        if not busy:
            return t, e
        t_all, e_all = self.together(prefill, num_decode, decode_kv_len)
        f = busy / others
        return t + f * (t_all - t), e + f * (e_all - e)
