"""Predictions per second through the Python API (one core).

    python bench/predict_speed.py

1. decode step of Llama-3.1-70B, TP8 on H100, at varying batch and context (shapes repeat, as in
   a sweep or a serving simulation: cached GEMM shapes allowed, attention recomputed);
2. the same with every call a new context length (no step-level cache hits);
3. a full `predict` of a request (prefill + 255 decode steps, integrated) with a fresh deployment
   cache each time and with a warm one;
4. full `predict` calls with varied shapes (batch 1-256, input 128-8192, output 1-512, seeded): every call a
   new prefill shape (issue 9's measure; goal >= 2,000/s on one core), also reported per CPU second of this
   process (`predict_varied_shapes_cpu_per_s`: what one core does, steadier than wall time when others load it),
   with the garbage collections of each generation during those calls (`gc_collections_gen{0,1,2}`, from
   gc.get_stats(): full, gen-2 collections are what memos of tracked objects cost; the settings are left as they are);
5. the same number of new varied shapes, each result turned into the stable JSON dict (`to_dict`: the breakdown
   rows, the largest batch and the error bands, which `predict` works out only when asked for them), what the CLI's
   `--json` and the HTTP server pay per call (`predict_varied_shapes_to_dict_per_s`, and per CPU second).
Goal (issue 2): >= 10,000 decode-step predictions per second.
"""

from __future__ import annotations

import gc
import json
import random
import time

from tokenfab import api


CPU_RATES: dict[str, float] = {}  # the same rates in this process's CPU time (steadier on a shared, loaded machine)


def rate(fn, n: int, name: str = "") -> float:
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    if name:
        CPU_RATES[name] = n / (time.process_time() - c0)
    return n / (time.perf_counter() - t0)


def main() -> None:
    api.step("llama-3.1-70b", "h100-sxm", tp=8, batch=1, context_len=1024)  # build the deployment once
    results = {
        "decode_step_repeated_shapes_per_s": rate(
            lambda i: api.step("llama-3.1-70b", "h100-sxm", tp=8, batch=1 + i % 64, context_len=1024 + 16 * (i % 128)), 40_000),
        "decode_step_new_context_per_s": rate(
            lambda i: api.step("llama-3.1-70b", "h100-sxm", tp=8, batch=32, context_len=100_000 + i), 20_000),
        "predict_request_warm_per_s": rate(
            lambda i: api.predict(model="llama-3.1-70b", hardware="h100-sxm", tp=8, batch=1 + i % 32, input_len=2048,
                                  output_len=256), 300, "predict_request_warm_cpu_per_s"),
    }

    def cold(i: int) -> None:
        api.deployment.cache_clear()
        api.predict(model="llama-3.1-70b", hardware="h100-sxm", tp=8, batch=8, input_len=2048, output_len=256)

    results["predict_request_cold_per_s"] = rate(cold, 30)
    rng = random.Random(0)
    shapes = [(rng.randint(1, 256), rng.randint(128, 8192), rng.randint(1, 512)) for _ in range(2000)]
    before = [g["collections"] for g in gc.get_stats()]
    results["predict_varied_shapes_per_s"] = rate(
        lambda i: api.predict(model="llama-3.1-70b", hardware="h100-sxm", tp=8, batch=shapes[i][0],
                              input_len=shapes[i][1], output_len=shapes[i][2]), len(shapes), "predict_varied_shapes_cpu_per_s")
    for gen, (g, b) in enumerate(zip(gc.get_stats(), before)):
        results[f"predict_varied_shapes_gc_collections_gen{gen}"] = g["collections"] - b
    fresh = [(rng.randint(1, 256), rng.randint(128, 8192), rng.randint(1, 512)) for _ in range(len(shapes))]
    results["predict_varied_shapes_to_dict_per_s"] = rate(
        lambda i: api.predict(model="llama-3.1-70b", hardware="h100-sxm", tp=8, batch=fresh[i][0],
                              input_len=fresh[i][1], output_len=fresh[i][2]).to_dict(), len(fresh),
        "predict_varied_shapes_to_dict_cpu_per_s")
    results.update(CPU_RATES)
    print(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
