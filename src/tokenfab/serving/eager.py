"""Host time of an engine iteration that carries prompt work, the one formula `serving.replica` and the capacity
steady state (`search.capacity`) both charge.

The engines replay decode-only iterations as captured CUDA graphs but run an iteration with prompt work eagerly,
launching each layer's kernels from Python (SGLang's prompt-only extend iterations; TensorRT-LLM's iterations with
a context request, `ScheduledRequests.can_run_cuda_graph` false). That host time (`EngineSpec.prefill_overhead_s`,
fitted per decoder layer and model class by bench/fit_moe_prefill.py) is either added to the iteration's kernels,
or, where the fit found the host launching ahead of the device (`EngineSpec.prefill_overhead_overlaps`), runs beside
them, so the iteration takes the longer of the two. The device idles through the part the kernels do not cover.
"""

from __future__ import annotations

import numpy as np


def eager_host_s(host_s: float, overlaps: bool, kernels_s):
    """Time an eager iteration adds to its kernels' `kernels_s` (a float, or an array over chips in a design
    sweep): all of `host_s`, or with `overlaps` what of it the kernels do not hide."""
    if not overlaps:
        return host_s
    if isinstance(kernels_s, np.ndarray):
        return np.maximum(0.0, host_s - kernels_s)
    return max(0.0, host_s - kernels_s)
