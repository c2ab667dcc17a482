"""The pinned predictions of the prediction-regression gate and how they are compared.

Kept apart from accuracy tracking (bench/accuracy.py): this gate asks only "did this change
alter any prediction?", never "is it closer to silicon?". The cases span the three efficiency
sources (fitted: h100-sxm, ascend-910b, mi355x; inherited: h20 bf16, h800-sxm; generic:
mi300x, tpu-v6e) and the three entry points (op, predict, simulate), at fixed shapes and seeds.
Any difference beyond floating-point noise fails; updating the golden file is a deliberate act
(`pytest tests/regression --update-regression`), reviewed as a diff in the same commit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tokenfab import api

GOLDEN = Path(__file__).with_name("predictions.json")
REL_TOL = 1e-9  # deterministic code: only float noise is tolerated

OPS = {
    "op/gemm/h100-sxm/bf16-m16": ("gemm", dict(hardware="h100-sxm", m=16, n=8192, k=8192, dtype="bf16")),
    "op/gemm/h100-sxm/fp8-m4096": ("gemm", dict(hardware="h100-sxm", m=4096, n=8192, k=8192, dtype="fp8")),
    "op/gemm/h20/bf16-m512": ("gemm", dict(hardware="h20", m=512, n=4096, k=4096, dtype="bf16")),
    "op/gemm/ascend-910b/bf16-m2048": ("gemm", dict(hardware="ascend-910b", m=2048, n=4096, k=4096, dtype="bf16")),
    "op/gemm/ascend-910b/int8-m64": ("gemm", dict(hardware="ascend-910b", m=64, n=8192, k=4096, dtype="int8")),
    "op/gemm/mi355x/fp4-m1024": ("gemm", dict(hardware="mi355x", m=1024, n=8192, k=8192, dtype="fp4")),
    "op/gemm/mi300x/bf16-m256": ("gemm", dict(hardware="mi300x", m=256, n=8192, k=8192, dtype="bf16")),
    "op/attention/h20/decode": ("attention", dict(hardware="h20", phase="decode", batch=32, q_len=1, kv_len=4096,
                                                  heads=32, kv_heads=8, head_dim=128, dtype="bf16")),
    "op/attention/ascend-910b/prefill": ("attention", dict(hardware="ascend-910b", phase="prefill", batch=2, q_len=2048,
                                                           kv_len=2048, heads=32, kv_heads=8, head_dim=128, dtype="bf16")),
    "op/attention/tpu-v6e/decode": ("attention", dict(hardware="tpu-v6e", phase="decode", batch=16, q_len=1, kv_len=2048,
                                                      heads=32, kv_heads=8, head_dim=128, dtype="bf16")),
    "op/allreduce/ascend-910b/8x64MB": ("allreduce", dict(hardware="ascend-910b", devices=8, bytes=64e6)),
    "op/allreduce/h100-sxm/8x1MB": ("allreduce", dict(hardware="h100-sxm", devices=8, bytes=1e6)),
    "op/allgather/mi300x/4x16MB": ("allgather", dict(hardware="mi300x", devices=4, bytes=16e6)),
}
PREDICTS = {
    "predict/llama-3.1-8b/h100-sxm": dict(model="llama-3.1-8b", hardware="h100-sxm", batch=8, input_len=1024, output_len=128),
    "predict/llama-3.1-8b/h20": dict(model="llama-3.1-8b", hardware="h20", batch=8, input_len=1024, output_len=128),
    "predict/llama-3.1-8b/ascend-910b-tp2": dict(model="llama-3.1-8b", hardware="ascend-910b", tp=2, batch=8,
                                                 input_len=1024, output_len=128),
    "predict/qwen3-32b/mi355x-fp8": dict(model="qwen3-32b", hardware="mi355x", dtype="fp8", batch=16, input_len=2048,
                                         output_len=256),
    "predict/llama-3.1-70b/h800-sxm-tp8": dict(model="llama-3.1-70b", hardware="h800-sxm", tp=8, batch=32,
                                               input_len=2048, output_len=256),
    "predict/qwen2.5-7b/tpu-v6e": dict(model="qwen2.5-7b", hardware="tpu-v6e", batch=4, input_len=512, output_len=64),
}
SIMULATES = {
    "simulate/llama-3.1-8b/h100-sxm/rate": dict(model="llama-3.1-8b", hardware="h100-sxm", rate=4.0, num_requests=40,
                                                input_len=512, output_len=64, seed=7),
    "simulate/llama-3.1-8b/ascend-910b/concurrency": dict(model="llama-3.1-8b", hardware="ascend-910b", concurrency=8,
                                                         num_requests=32, input_len=512, output_len=64, seed=3),
}
PREDICT_FIELDS = ("ttft_s", "tpot_s", "e2e_s", "throughput_tokens_per_s", "energy_j_per_token", "efficiency_source")
SIMULATE_FIELDS = ("ttft_s", "tpot_s", "e2e_s", "throughput_tokens_per_s", "completed", "preempted")


def current_predictions() -> dict:
    """Every pinned case, computed now (a few seconds)."""
    out: dict[str, dict] = {}
    for key, (kind, kwargs) in OPS.items():
        d = api.op(kind, **kwargs).to_dict()
        out[key] = {"time_s": d["time_s"], "efficiency_source": d["efficiency_source"]}
    for key, kwargs in PREDICTS.items():
        d = api.predict(**kwargs).to_dict()
        out[key] = {f: d[f] for f in PREDICT_FIELDS}
    for key, kwargs in SIMULATES.items():
        d = api.simulate(**kwargs).to_dict()
        out[key] = {f: d[f] for f in SIMULATE_FIELDS}
    return out


def _walk(prefix: str, frozen, now, out: list[str]) -> None:
    if isinstance(frozen, dict) and isinstance(now, dict):
        for k in sorted(set(frozen) | set(now)):
            if k not in now or k not in frozen:
                out.append(f"{prefix}.{k}: {'removed' if k not in now else 'added'}")
            else:
                _walk(f"{prefix}.{k}", frozen[k], now[k], out)
    elif isinstance(frozen, (int, float)) and isinstance(now, (int, float)) and not isinstance(frozen, bool):
        if not math.isclose(frozen, now, rel_tol=REL_TOL, abs_tol=1e-15):
            out.append(f"{prefix}: {frozen!r} -> {now!r} ({(now / frozen - 1) * 100 if frozen else float('inf'):+.4f}%)")
    elif frozen != now:
        out.append(f"{prefix}: {frozen!r} -> {now!r}")


def compare(frozen: dict, now: dict) -> list[str]:
    """Every difference between the golden file and the current predictions, one line each."""
    out: list[str] = []
    for key in sorted(set(frozen) | set(now)):
        if key not in now or key not in frozen:
            out.append(f"{key}: {'case removed' if key not in now else 'new case (not in the golden file)'}")
        else:
            _walk(key, frozen[key], now[key], out)
    return out


def write_golden(now: dict) -> None:
    tmp = GOLDEN.with_name(GOLDEN.name + ".tmp")
    tmp.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
    tmp.replace(GOLDEN)
