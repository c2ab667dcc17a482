"""P/D hand-off: a finished prompt's KV cache on its way from its prefill replica to the decode pool.

Two facts of the engines' KV transfer set when a decode replica can admit a prompt that its prefill replica finished:

- What moves. Every rank of the decode instance receives the KV it will hold. Under MLA (DeepSeek) the latent cache
  has one head, so every attention-TP rank of the decode instance holds all of it: a TP8 decode instance needs eight
  copies of each prompt token's KV, an attention-DP decode rank one. GQA heads split over TP up to the KV-head count
  and are copied beyond it. So the bytes per prompt token are the decode layout's per-device KV bytes times its
  attention-TP size (`handoff_s_per_token`). They leave from the prefill instance's attention-TP ranks, each over
  its own scale-out NIC (TensorRT-LLM's cache formatters split the blocks by the two layouts' ranks:
  cpp/tensorrt_llm/batch_manager/cacheFormatter.cpp, mlaCacheFormatter.cpp).
- In what order. TensorRT-LLM's context side hands each finished request to its CacheSender (DataResponder), one
  response thread that serves the generation side's requests for KV one at a time, through one pre-allocated send
  buffer: TRTLLM_KVCACHE_SEND_MAX_CONCURRENCY_NUM, "the maximum number of concurrent KV cache sends", default 1
  (docs/source/advanced/disaggregated-service.md, TensorRT-LLM 0.20-1.0; cacheTransBufferManager.cpp
  mSendBufferCount). A prefill replica's transfers therefore queue behind each other (`KvHandoff`); engines whose
  transfer runs without such a queue (`EngineSpec.kv_send_streams` None) start each at once.

At 50 GB/s per NIC this is milliseconds per prompt (an 8192-token DeepSeek prompt in FP8: 288 MB per copy, 5.8 ms;
46 ms for a TP8 decode instance), so it decides TTFT only where the prompts are long, the decode instance wide and
the prefill pool fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SOURCE = ("TensorRT-LLM docs/source/advanced/disaggregated-service.md (TRTLLM_KVCACHE_SEND_MAX_CONCURRENCY_NUM, "
          "default 1); cpp/tensorrt_llm/batch_manager/dataTransceiver.cpp (DataResponder: one response thread), "
          "cacheTransBufferManager.cpp (send buffers), mlaCacheFormatter.cpp (MLA: every TP rank holds the latent cache)")


def handoff_s_per_token(decode_kv_bytes_per_token: float, decode_tp: int, prefill_tp: int,
                        link_bytes_per_s: float) -> float:
    """Link seconds per prompt token of one hand-off: the bytes every attention-TP rank of the decode instance holds
    for a token (`decode_kv_bytes_per_token` per device, replicated heads counted on every rank that holds them),
    sent by the prefill instance's `prefill_tp` ranks in parallel, each over a link of `link_bytes_per_s`."""
    if min(decode_tp, prefill_tp) < 1 or link_bytes_per_s <= 0 or decode_kv_bytes_per_token < 0:
        raise ValueError("hand-off needs tp >= 1, a positive link bandwidth and non-negative KV bytes")
    return decode_kv_bytes_per_token * decode_tp / (prefill_tp * link_bytes_per_s)


@dataclass(slots=True)
class KvHandoff:
    """When each prompt's KV reaches the decode pool: `s_per_token` link seconds per prompt token, sent through
    `streams` concurrent sends per prefill replica (None: every transfer starts when its prompt finishes)."""

    s_per_token: float
    streams: int | None = None
    free_s: dict[int, list[float]] = field(default_factory=dict)  # prefill replica -> when each of its sends is free

    def arrival_s(self, replica: int, prompt_tokens: int, now: float) -> float:
        """The KV of a `prompt_tokens` prompt that finished on prefill replica `replica` at `now` arrives then."""
        duration = prompt_tokens * self.s_per_token
        if self.streams is None:
            return now + duration
        sends = self.free_s.get(replica)
        if sends is None:
            sends = self.free_s[replica] = [0.0] * self.streams
        k = min(range(len(sends)), key=sends.__getitem__)  # the send that frees first
        end = max(now, sends[k]) + duration
        sends[k] = end
        return end
