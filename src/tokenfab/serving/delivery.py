"""Token delivery: the serial server stage every streamed token passes on its way to the client.

An OpenAI-compatible server streams each output token as its own chunk: the engine hands the iteration's new
tokens to the server process, which detokenises them and writes one server-sent event per request and token.
In `trtllm-serve` (TensorRT-LLM 1.0, PyTorch backend) that work runs in the one Python process that also parses
and tokenises every request (tensorrt_llm/serve/openai_server.py; PR #7515: "a single cpu thread is responsible for
tokenization for every request"; the LLM API's per-response postprocessing and detokenisation under the same GIL
unless postprocess workers are configured, tech blog 8 "Support Stream Interval"). When that process saturates,
tokens queue behind each other and behind new requests: a client sees its first token late (TTFT) and its later
tokens spaced by the server, not by the engine (TPOT), and sends its next request only when its last token
arrived, so the engine holds fewer requests.

The stage is one FIFO server of fixed time per token, shared with the front end's per-request time
(`Simulation.front_free_s`). The simulator learns of an engine's tokens when a piece of work ends: one iteration,
whose tokens all arrive at its end, or a closed-form decode run of k iterations, whose tokens arrive in k equal
batches. For the run the server's free time after the k batches has a closed form (below), so no event is made per
token; tokens are taken in the order the engine's work ends (a request arriving during a run is queued before that
run's tokens, a small reordering of a FIFO that conserves the server's work).
"""

from __future__ import annotations


def after_batch(free_s: float, at_s: float, work_s: float) -> float:
    """The server's free time after `work_s` of tokens handed over at `at_s` (FIFO: it starts them when free)."""
    return (free_s if free_s > at_s else at_s) + work_s


def after_run(free_s: float, start_s: float, end_s: float, iters: int, work_s: float) -> float:
    """The server's free time after a decode run's `iters` batches, each of `work_s`, handed over at the ends of equal
    iterations from `start_s` to `end_s`. With iteration j ending at s + j x dt and F_j = max(F_{j-1}, s + j dt) + w,
    F_k = max(F_0 + k w, max_j (s + j dt + (k - j + 1) w)); the inner term is linear in j, so its maximum is at
    j = 1 or j = k: the server was busy throughout, caught up at the first batch, or keeps pace and ends one batch
    after the run."""
    dt = (end_s - start_s) / iters
    total = iters * work_s
    return max(free_s + total, start_s + dt + total, end_s + work_s)
