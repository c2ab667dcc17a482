"""The MoE serving bench's not-scored rules: runs whose measurement is not the steady state of the load it states.

Each rule is a judgement on the data that applies to every MoE (and, where the dense bench reuses it, dense) serving
row alike, returns the jobs it keeps and one not-scored line per metric it drops, with its reason, and is counted in
the bench's report (bench/accuracy_moe_serving.py `_jobs` applies them in order). None changes a prediction.
"""

from __future__ import annotations


def is_stalled_series(meta: dict) -> bool:
    """An aggregated SGLang run of NVFP4 experts split by MoE-TP only (moe_ep 1, no attention-DP) on B200 whose SGLang
    release the source leaves blank ('sglang nan': aiconfigurator's db-dump/2026-04-27 configs 88 and 99 and the
    2026-04-06 source, measured 2025-11-10, TP 4 and TP 8). At 8192 input tokens their TTFT is 5.5-5.6 s already at
    C = 4 (against 0.48-0.59 s for the same layouts' FP8 runs with SGLang 0.5.9, and 0.25-0.32 s for 0.5.9's NVFP4
    runs with EP) and 2.1-12.1 s over C = 4-128 in no order of load; at 1024 input tokens it jumps from 0.6-0.9 s at
    C = 16 to 7.1-8.8 s at C = 32 and stays there to C = 128, while their TPOT stays within 10-35% of those runs': a first-token stall that grows neither with the
    prompt nor with the load, which the engine's work cannot produce (a prefill-first engine that spent it prefilling
    would pause every decode for it). Neither the notes nor the release say what it is (a JIT compile or autotune of
    the FP4 MoE kernels at new shapes is one candidate), so the series is listed, not scored, as a whole."""
    lay = meta.get("layout", {})
    return (meta.get("framework") == "sglang" and meta.get("release", "").endswith("nan") and meta.get("device") == "b200"
            and meta.get("moe_quant") == "nvfp4" and lay.get("ep") == 1 and lay.get("dp") == 1
            and "prefill_replicas" not in lay)


def first_token_stalls(jobs: list[dict]) -> tuple[list[dict], list[str]]:
    """(jobs kept, one not-scored line per metric of the runs of `is_stalled_series`)."""
    kept, reasons = [], []
    for job in jobs:
        if not is_stalled_series(job["meta"]):
            kept.append(job)
            continue
        reasons += [f"{case_id}: SGLang (release not stated) NVFP4 MoE-TP series on B200 with first-token stalls of "
                    f"seconds that grow neither with prompt nor load (`is_stalled_series`): not scored"
                    for _, case_id in job["measured"].values()]
    return kept, reasons


# Runs whose own TTFT and TPOT put fewer than this share of the stated clients in flight (Little's law) are not
# scored: the engine never saw the stated load. Every other MoE run of e2e_aiconfigurator_silicon.csv (aggregated and
# P/D) keeps >= 0.44 C in flight (the KV-bound SGLang DeepSeek C = 512 runs 0.51 C); the nine vLLM 0.11.2
# GPT-OSS-120B H100 runs at C = 512 keep 96-106 (0.19-0.21 C) whatever their TP (2, 4, 8) and lengths, so a cap of
# about 100 requests outside the stated configuration (client connections or server admission; the source names
# neither) set their load, and some of their TPOTs lie below the expert-weight read of one decode step.
MIN_IN_FLIGHT_FRAC = 1.0 / 3.0


def in_flight_frac(job: dict) -> float | None:
    """Mean requests in decode over the stated clients, by Little's law on the run's own measured means: C clients
    each spending TTFT + OSL x TPOT per request, OSL x TPOT of it decoding (None without both metrics)."""
    measured = job["measured"]
    if "ttft_ms" not in measured or "tpot_ms" not in measured:
        return None
    decode_ms = job["kwargs"]["output_len"] * measured["tpot_ms"][0]
    return decode_ms / (measured["ttft_ms"][0] + decode_ms)


def below_stated_load(jobs: list[dict]) -> tuple[list[dict], list[str]]:
    """(jobs kept, one not-scored line per metric of the runs below MIN_IN_FLIGHT_FRAC of their stated clients)."""
    kept, reasons = [], []
    for job in jobs:
        frac = in_flight_frac(job)
        if frac is None or frac >= MIN_IN_FLIGHT_FRAC:
            kept.append(job)
            continue
        c = job["meta"]["concurrency"]
        reasons += [f"{case_id}: {frac * c:.0f} requests in flight by Little's law on its own TTFT and TPOT against "
                    f"{c} stated clients (< {MIN_IN_FLIGHT_FRAC:.2f} C): not run at the stated load (`below_stated_load`)"
                    for _, case_id in job["measured"].values()]
    return kept, reasons


# A run whose mean TTFT is more than this many times the TTFT its own deployment (same campaign, same simulated
# arguments but the load) measured at a HIGHER concurrency is not scored. In a closed loop of C clients, engines whose
# schedulers admit a waiting prompt at the next iteration (no batch waiting, no attention-DP balance: what the
# campaigns' stated configurations run, `is_balanced_kind`) never make a prompt wait less because more clients
# queue beside it, so mean TTFT does not fall as C rises; a run far above a higher-load run of the same deployment
# held a start-up transient its few requests (10 x C) did not amortise. The same campaigns show it where no
# deployment is shared: 2026-03-25 B200 TensorRT-LLM P/D runs at C = 4-6 measured 1.9-2.8 s against 0.17-0.31 s at
# C = 10-32 of the same layout. Scored runs it removes: the H100 TensorRT-LLM P/D cfg494 runs at C = 6 (12.3 and
# 13.7 s against 5.1 and 6.3 s at C = 30) and the 2026-04-06 SGLang B200 DeepSeek-R1 TP8 runs at C = 4-16 (5.6-9.2 s
# against 2.1 s at C = 32). The factor 2 leaves run-to-run spread alone: the smallest ratio it flags is 2.17.
MAX_TTFT_OVER_HIGHER_LOAD = 2.0


def _ttft_runs_by(jobs: list[dict], varied: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """The jobs measured on TTFT, grouped by their campaign and every simulated argument but those in `varied`."""
    groups: dict[tuple, list[dict]] = {}
    for job in jobs:
        if "ttft_ms" in job["measured"]:
            key = (job["meta"].get("campaign"),) + tuple(sorted((k, str(v)) for k, v in job["kwargs"].items()
                                                                if k not in varied))
            groups.setdefault(key, []).append(job)
    return groups


# What a deployment's runs at several loads differ in: the clients, their request count, the token budget
# `_engine_overrides` derives from the prompt length and the clients, and the sequence limit `mtp_script_limits`
# derives from them.
_LOAD_ARGS = ("concurrency", "num_requests", "max_batched_tokens", "max_num_seqs")


def above_higher_load_ttft(jobs: list[dict]) -> tuple[list[dict], list[str]]:
    """(jobs kept, one not-scored line per metric of the runs whose TTFT exceeds MAX_TTFT_OVER_HIGHER_LOAD times the
    lowest TTFT of the same deployment at a higher concurrency)."""
    flagged: dict[int, str] = {}
    for runs in _ttft_runs_by(jobs, _LOAD_ARGS).values():
        for job in runs:
            c, ttft = job["kwargs"]["concurrency"], job["measured"]["ttft_ms"][0]
            higher = [(o["measured"]["ttft_ms"][0], o["kwargs"]["concurrency"]) for o in runs if o["kwargs"]["concurrency"] > c]
            if higher and ttft > MAX_TTFT_OVER_HIGHER_LOAD * min(higher)[0]:
                low, at = min(higher)
                flagged[id(job)] = (f"mean TTFT {ttft:.0f} ms at C = {c} against {low:.0f} ms for the same deployment at "
                                    f"C = {at} (> {MAX_TTFT_OVER_HIGHER_LOAD:g}x): not the steady state of the stated "
                                    f"load (`above_higher_load_ttft`)")
    kept = [job for job in jobs if id(job) not in flagged]
    reasons = [f"{case_id}: {flagged[id(job)]}" for job in jobs if id(job) in flagged
               for _, case_id in job["measured"].values()]
    return kept, reasons


# A run whose mean TTFT is at least MIN_FLAT_TTFT_S and less than MAX_TTFT_GROWTH times that of the same deployment at
# the same concurrency with a prompt MIN_PROMPT_GROWTH or more times shorter (or longer) is not scored on TTFT. Every
# engine's first token waits for its prompt's prefill and, in P/D runs, for the prompt's KV hand-off, both at least
# linear in the prompt; what does not grow with the prompt is the client's and router's fixed latency, at most 240 ms
# in every MoE campaign fitted (bench/data/moe_serving_clients.yaml), which is why the 128- to 1024-token Qwen3 H100
# runs are flat at 0.17-0.35 s and stay scored. A first token seconds late that an 8x longer prompt leaves within
# 1.5x waits for something neither the notes nor the prompt's work state. The one series it removes: the H100
# TensorRT-LLM P/D cfg494 runs (prefill attention-DP 16 over two nodes, three TP16 decode instances) at C = 9 (7.14 s
# at 1024 tokens, 7.66 s at 8192) and C = 30 (5.05 s, 6.31 s), whose pools take a prompt every 0.8-2.5 s; the B200 P/D
# cfg320 runs (Dynamo 0.8.1 image too) grow 4.1-4.5x over the same prompt lengths. TPOT is scored as measured.
MIN_FLAT_TTFT_S = 1.0
MAX_TTFT_GROWTH = 1.5
MIN_PROMPT_GROWTH = 4.0


# What a deployment's runs at one load differ in with the prompt: its length, the token budget `_engine_overrides`
# derives from it, and the request count.
_PROMPT_ARGS = ("input_len", "max_batched_tokens", "num_requests")


def prompt_insensitive_ttft(jobs: list[dict]) -> tuple[list[dict], list[str]]:
    """(jobs with the TTFT of `MIN_FLAT_TTFT_S`-or-later first tokens that a MIN_PROMPT_GROWTH-fold prompt moves by less
    than MAX_TTFT_GROWTH removed from their measurements, one not-scored line per TTFT removed). Both runs of such a
    pair lose their TTFT; a job left without measurements is dropped."""
    flagged: dict[int, str] = {}
    for runs in _ttft_runs_by(jobs, _PROMPT_ARGS).values():
        for short in runs:
            for long in runs:
                (t_s, _), (t_l, _) = short["measured"]["ttft_ms"], long["measured"]["ttft_ms"]
                growth = long["kwargs"]["input_len"] / short["kwargs"]["input_len"]
                if growth >= MIN_PROMPT_GROWTH and t_s >= MIN_FLAT_TTFT_S * 1e3 and t_l < MAX_TTFT_GROWTH * t_s:
                    why = (f"mean TTFT {t_s:.0f} ms at {short['kwargs']['input_len']} prompt tokens and {t_l:.0f} ms at "
                           f"{long['kwargs']['input_len']} (same deployment, C = {short['kwargs']['concurrency']}): "
                           f"< {MAX_TTFT_GROWTH:g}x for a {growth:g}x prompt, a first-token wait the prompt's work does "
                           f"not set (`prompt_insensitive_ttft`)")
                    flagged[id(short)] = flagged[id(long)] = why
    kept, reasons = [], []
    for job in jobs:
        if id(job) not in flagged:
            kept.append(job)
            continue
        measured = dict(job["measured"])
        _, case_id = measured.pop("ttft_ms")
        reasons.append(f"{case_id}: {flagged[id(job)]}")
        if measured:
            kept.append({**job, "measured": measured})
    return kept, reasons
