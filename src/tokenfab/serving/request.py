"""One request flowing through the simulator (an inner-loop object: a slotted dataclass)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class Request:
    """A prompt of `prompt_len` tokens asking for `output_len` tokens.

    `hash_ids` (optional) name the prompt's prefix blocks of `hash_block_tokens` tokens each, as
    in the Mooncake traces: equal ids at the same leading positions are reusable KV blocks.
    Times are simulation seconds; -1 means 'not yet'.
    """

    rid: int
    arrival_s: float
    prompt_len: int
    output_len: int
    hash_ids: tuple[int, ...] | None = None
    client: int = -1  # closed-loop client that sent it

    # progress
    computed: int = 0  # prompt (or recompute) tokens whose KV is in the cache
    generated: int = 0  # output tokens produced so far
    cached_hit_tokens: int = 0  # prompt tokens served from the prefix cache on admission
    first_token_s: float = -1.0
    finish_s: float = -1.0
    preemptions: int = 0
    replica: int = -1

    # bookkeeping owned by the replica
    shared_blocks: int = 0  # KV blocks it uses that belong to prefix-cache entries
    cache_refs: tuple[int, ...] = ()  # prefix-cache entries it references (a tuple: no list made per request)
    decode_join: int = -1  # replica iteration counter when it started decoding (-1: not decoding)
    published: bool = False  # its prompt blocks were offered to the prefix cache
    ready_s: float = -1.0  # disaggregation: when its KV reached the decode pool
    final_blocks: int = 0  # reserve (no-evict) engines: private KV blocks it holds when it finishes

    @property
    def to_prefill(self) -> int:
        """Tokens still to prefill: the prompt, or after a preemption by recompute the prompt plus
        everything generated so far (their KV was dropped); the prefill's last step emits a token."""
        return self.prompt_len + self.generated - self.computed
