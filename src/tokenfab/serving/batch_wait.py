"""TensorRT-LLM's batch waiting: prompts arriving while decodes run are held back to batch more of them.

PyExecutor._schedule and _waiting_requests (tensorrt_llm/_torch/pyexecutor/py_executor.py; NVIDIA/TensorRT-LLM PR
#7287, each decode counted as one token since PR #7416; off by default, llm_args.py batch_wait_timeout_iters 0,
batch_wait_max_tokens_ratio 0): in an iteration with both prompts to start and decodes running (attention-DP off),
the prompts are held back unless the engine's one counter has reached batch_wait_timeout_iters or the iteration's
tokens (the prompts the scheduler fits, counted whole, plus one per decode) reach batch_wait_max_tokens_ratio x
max_num_tokens; the counter grows by one per held iteration and restarts when prompts go through. Prompts waiting
with no decode running start at once and leave the counter as it is. Holding them trades their TTFT for fewer,
larger prefill iterations. With either setting at 0 the stop test is always true, so nothing waits.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class BatchWait:
    """One replica's batch-waiting state."""

    timeout_iters: int
    max_tokens: float  # batch_wait_max_tokens_ratio x max_num_tokens
    count: int = 0  # the engine's wait counter, as of iteration `held_from` while prompts are held
    held_from: int = -1  # iteration from which held iterations are still to be counted (-1: none held)

    def holds(self, replica, budget: int) -> bool:
        """Whether `replica` (with prompts waiting) holds them back in the iteration it plans now; when it does, it
        sets `replica.hold_iters` (the iterations after which the test is due again). The KV room of the capacity
        scheduler is not part of the token count (prompts that do not fit the KV cache are counted)."""
        count = self.count
        if self.held_from >= 0:  # every iteration run since the prompts were held was a held iteration
            count += replica.g - self.held_from
            self.held_from = -1
        self.count = count
        if not replica.num_decode:
            return False
        if count >= self.timeout_iters or replica.num_decode + waiting_prompt_tokens(replica, budget) >= self.max_tokens:
            self.count = 0
            return False
        self.held_from = replica.g
        replica.hold_iters = self.timeout_iters - count
        return True


def waiting_prompt_tokens(replica, budget: int) -> int:
    """Prompt tokens of the waiting requests the replica's next iteration could start, in queue order, within `budget`
    and the free sequence slots (without chunked prefill, the first that does not fit ends the scan). A queue other
    than first-come-first-served is read at its head only."""
    waiting, spec = replica.waiting, replica.spec
    queue = waiting if isinstance(waiting, deque) else [waiting.peek()]
    slots, total = spec.max_num_seqs - replica.num_decode - len(replica.prefilling), 0
    for req in queue:
        todo = req.prompt_len + req.generated - req.computed
        if slots <= 0 or total >= budget or (todo > budget - total and not spec.chunked_prefill):
            break
        total += min(todo, budget - total)
        slots -= 1
    return total


def batch_wait_of(policy, max_num_batched_tokens: int, role: str) -> BatchWait | None:
    """The replica's batch waiting under an engine policy: None where nothing would wait (either setting at 0, or a
    P/D pool, whose iterations never hold prompts beside decodes)."""
    iters = getattr(policy, "batch_wait_timeout_iters", 0)
    ratio = getattr(policy, "batch_wait_max_tokens_ratio", 0.0)
    if iters <= 0 or ratio <= 0 or role != "both":
        return None
    return BatchWait(iters, ratio * max_num_batched_tokens)
