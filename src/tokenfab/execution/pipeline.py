"""Pipeline parallelism in steady state: how a replica's step splits into the micro-batches in flight.

With `pp` stages an engine keeps up to `pp` micro-batches in flight across steps, each stage working on a different
one: TensorRT-LLM's PyTorch executor has num_micro_batches = pp_size and schedules one micro-batch per iteration
from the requests not in flight (_torch/pyexecutor/py_executor.py `_executor_loop_pp`); vLLM V1 keeps
max_concurrent_batches = pp batches in its batch queue (v1/engine/core.py `step_with_batch_queue`). A step of the
step model is one round of them: every micro-batch advances one token. The micro-batches run in a fixed ring, and
a micro-batch's next iteration needs its sampled tokens back from the last stage, so each one waits for the
slowest: the round takes `pp` times the busiest micro-batch's stage time plus the `pp - 1` activation hops of its
way through the stages (`execution.step`), whatever the number of micro-batches up to `pp`; each device is busy
with every micro-batch's stage and idle the rest. The pipeline fill, each micro-batch entering the first stage
after the ones before it, is paid once, when the pipeline starts empty (`StepModel.pipeline_fill`).

The step hands over the replica's work as a whole, so how it is divided matters: an engine fills each micro-batch to
its own limits (TensorRT-LLM's micro-batch scheduler: max_batch_size and max_num_tokens per micro-batch), which
spreads prompts and decodes evenly rather than putting one prompt of every shape into every micro-batch.
`micro_batches` divides it so: prompt sequences longest first, each to the micro-batch holding the fewest tokens,
and the decodes evenly (a or a + 1 each), the extra ones to the micro-batches holding the fewest tokens.
"""

from __future__ import annotations

from tokenfab.execution.layers import StepBatch


def num_micro_batches(pp: int, num_sequences: int) -> int:
    """Micro-batches a step of `num_sequences` runs as on `pp` stages: one per stage, fewer when there are fewer
    sequences (1 for a single stage, or an empty step)."""
    return min(pp, max(1, num_sequences)) if pp > 1 else 1


def micro_batches(batch: StepBatch, micro: int) -> list[tuple[StepBatch, int]]:
    """`batch` divided into `micro` micro-batches as an engine filling each to its limits would (see the module doc):
    the distinct micro-batches with how many of them there are, in the order first met (deterministic). Every
    sequence lands in exactly one micro-batch; the decodes keep the batch's mean context."""
    if micro <= 1:
        return [(batch, 1)]
    loads = [0] * micro
    groups: list[dict[tuple[int, int], int]] = [{} for _ in range(micro)]
    for n, q, kv in sorted(batch.prefill, key=lambda g: (-g[1], -g[2], -g[0])):  # longest prompts first
        each, extra = divmod(n, micro)
        if each:
            for j in range(micro):
                groups[j][(q, kv)] = groups[j].get((q, kv), 0) + each
                loads[j] += each * q
        for _ in range(extra):
            j = min(range(micro), key=loads.__getitem__)  # the first of the least-loaded
            groups[j][(q, kv)] = groups[j].get((q, kv), 0) + 1
            loads[j] += q
    each, extra = divmod(batch.num_decode, micro)
    decodes = [each] * micro
    for j in sorted(range(micro), key=loads.__getitem__)[:extra]:  # a stable sort: ties by position
        decodes[j] += 1
    shapes: dict[StepBatch, int] = {}
    for j in range(micro):
        prefill = tuple((n, q, kv) for (q, kv), n in groups[j].items())
        mb = StepBatch(prefill, decodes[j], batch.decode_kv_len if decodes[j] else 0.0)
        shapes[mb] = shapes.get(mb, 0) + 1
    return list(shapes.items())
