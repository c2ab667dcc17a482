"""`search`: screen every candidate with the step model, confirm the best by simulation.

Screening runs in this process, in `--workers N` local processes, or on a Ray cluster; the
candidates are split into contiguous chunks and the results put back in candidate order, so
the outcome does not depend on where it ran. Confirmation calls the `confirm` function the API
passes in (`api.simulate` with the candidate's `simulate_args`): the search layer sits below the
API and never imports it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from tokenfab.errors import InvalidInputError
from tokenfab.search.ray_map import ray_map
from tokenfab.search.screen import Traffic, screen
from tokenfab.search.space import Candidate, SearchSpec, enumerate_candidates

OBJECTIVE_KEY = {"goodput-per-chip": "goodput_tokens_per_s_per_chip", "goodput-per-cost": "goodput_tokens_per_s_per_cny",
                 "goodput-per-watt": "goodput_tokens_per_s_per_w", "min-cost": "cost_cny"}


@dataclass
class SearchResult:
    """Screened candidates (in candidate order), the confirmed ones, the best and the Pareto front."""

    spec: SearchSpec
    rows: list[dict]
    confirmed: list[dict]
    best: dict | None
    pareto: list[dict]
    search_wall_s: float
    screen_wall_s: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        feasible = [r for r in self.rows if r["predicted"].get("feasible")]
        return {"configs_evaluated": len(self.rows), "configs_feasible": len(feasible),
                "search_wall_s": self.search_wall_s, "screen_wall_s": self.screen_wall_s,
                "objective": self.spec.objective, "best": self.best, "pareto": self.pareto,
                "candidates": sorted(feasible, key=_rank_key(self.spec.objective)), **self.extra}


def traffic_of(spec: SearchSpec) -> Traffic:
    """The screen's traffic: a trace becomes its mean arrival rate and mean lengths."""
    if spec.trace is None:
        return Traffic(spec.rate, spec.concurrency, spec.input_len, spec.output_len)
    from tokenfab.serving.traces import read_trace

    rows = list(read_trace(spec.trace))
    if len(rows) < 2:
        raise InvalidInputError(f"trace {spec.trace} has fewer than two requests")
    span = rows[-1].arrival_s - rows[0].arrival_s
    mean_in = sum(r.prompt_len for r in rows) / len(rows)
    mean_out = sum(r.output_len for r in rows) / len(rows)
    return Traffic((len(rows) - 1) / span, None, max(1, round(mean_in)), max(2, round(mean_out)))


def screen_chunk(spec_json: str, traffic: Traffic, candidates: list[Candidate]) -> list[dict]:
    """Screen a list of candidates (a module-level function so processes and Ray can run it)."""
    spec = SearchSpec.model_validate_json(spec_json)
    return [screen(c, spec, traffic) for c in candidates]


def _chunks(items: list, n: int) -> list[list]:
    size = max(1, math.ceil(len(items) / n))
    return [items[i:i + size] for i in range(0, len(items), size)]


def screen_all(spec: SearchSpec, candidates: list[Candidate], traffic: Traffic, workers: int = 1,
               ray_address: str | None = None, progress: Callable[[int], None] | None = None) -> list[dict]:
    """Screen results in candidate order, computed locally, in processes, or on Ray."""
    spec_json = spec.model_dump_json()
    if ray_address:
        return _screen_ray(spec_json, traffic, candidates, ray_address, max(workers, 1))
    if workers <= 1:
        out = []
        for i, c in enumerate(candidates):
            out.append(screen(c, spec, traffic))
            if progress is not None:
                progress(i + 1)
        return out
    chunks = _chunks(candidates, workers * 4)
    out: list[dict] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(screen_chunk, [spec_json] * len(chunks), [traffic] * len(chunks), chunks):
            out += part
            if progress is not None:
                progress(len(out))
    return out


def _screen_ray(spec_json: str, traffic: Traffic, candidates: list[Candidate], address: str, parts: int) -> list[dict]:
    return ray_map(screen_chunk, [(spec_json, traffic, chunk) for chunk in _chunks(candidates, parts * 4)], address)


def _rank_key(objective: str):
    key = OBJECTIVE_KEY[objective]

    def k(row: dict):
        v = row["predicted"].get(key)
        if v is None:
            return (1, 0.0)
        return (0, v if objective == "min-cost" else -v)
    return k


def pareto_front(rows: list[dict]) -> list[dict]:
    """Feasible rows no other row beats on both goodput per chip and tokens/s per user."""
    pts = sorted((r for r in rows if r["predicted"].get("feasible")),
                 key=lambda r: (-r["predicted"]["goodput_tokens_per_s_per_chip"], -r["predicted"]["tokens_per_s_per_user"]))
    front, best_user = [], -math.inf
    for r in pts:
        u = r["predicted"]["tokens_per_s_per_user"]
        if u > best_user:
            front.append(r)
            best_user = u
    return front


def simulate_args(c: Candidate, p: dict, spec: SearchSpec, engine_supported: bool) -> dict:
    """Keyword arguments for `api.simulate` that run this candidate under the search's traffic."""
    args: dict = {"model": c.model, "hardware": c.hardware, "tp": c.tp, "pp": c.pp, "ep": c.ep, "dtype": c.dtype,
                  "weight_dtype": c.weight_dtype, "kv_dtype": c.kv_dtype, "num_requests": spec.num_requests,
                  "input_len": spec.input_len, "output_len": spec.output_len, "input_dist": spec.input_dist,
                  "output_dist": spec.output_dist, "seed": spec.seed, "slo_ttft_ms": spec.slo_ttft_s * 1e3,
                  "slo_tpot_ms": spec.slo_tpot_s * 1e3, "max_num_seqs": c.max_num_seqs,
                  "max_batched_tokens": c.max_batched_tokens}
    if spec.trace is not None:
        args["trace"] = spec.trace
    elif spec.rate is not None:
        args["rate"] = spec.rate
    else:
        args["concurrency"] = spec.concurrency
    if engine_supported:
        args["engine"] = c.engine
    if c.disaggregated:
        args.update(prefill_replicas=p["prefill_replicas"], decode_replicas=p["decode_replicas"], prefill_tp=c.tp,
                    decode_tp=c.decode_tp)
        if c.decode_hardware != c.hardware:
            args["decode_hardware"] = c.decode_hardware
    else:
        args["replicas"] = p["replicas"]
    return args


def _percentile_key(spec: SearchSpec) -> str:
    return {50.0: "p50", 90.0: "p90", 99.0: "p99"}.get(spec.slo_percentile, "p99")


def confirmed_figures(summary: dict, spec: SearchSpec, traffic: Traffic, num_devices: int,
                      cost_cny: float | None) -> dict:
    """What the confirmation run shows: latency at the SLO percentile, goodput, whether the SLO holds.

    Open-loop goodput is the offered output rate times the share of requests within the SLO (the
    run's own span includes the drain after the last arrival, which a steady service has not);
    closed-loop goodput is the run's own rate of tokens of requests within the SLO."""
    key = _percentile_key(spec)
    ttft, tpot = summary["ttft_s"][key], summary["tpot_s"][key]
    per_req = summary["output_tokens"] / summary["completed"] if summary["completed"] else 0.0
    if traffic.rate is not None:
        goodput = summary["slo_attainment"] * traffic.rate * traffic.output_len
    else:
        goodput = summary["goodput_requests_per_s"] * per_req
    power = summary["energy_j"] / summary["simulated_s"] if summary["simulated_s"] else math.nan
    return {"ttft_s": ttft, "tpot_s": tpot, "percentile": key, "throughput_tokens_per_s": summary["throughput_tokens_per_s"],
            "goodput_tokens_per_s": goodput, "goodput_tokens_per_s_per_chip": goodput / num_devices,
            "goodput_tokens_per_s_per_w": goodput / power if power else None, "power_w": power,
            "goodput_tokens_per_s_per_cny": goodput / cost_cny if cost_cny else None, "cost_cny": cost_cny,
            "slo_attainment": summary["slo_attainment"], "completed": summary["completed"],
            "meets_slo": bool(ttft <= spec.slo_ttft_s and tpot <= spec.slo_tpot_s), "sim_wall_s": summary["sim_wall_s"]}


def search_deployments(spec: SearchSpec, confirm: Callable[[dict], dict] | None = None, *, workers: int = 1,
                       ray_address: str | None = None, engine_supported: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Screen every candidate, rank by the objective, confirm the top K with `confirm(simulate_args)`
    (a simulate summary dict); the best is the best confirmed candidate that meets the SLO."""
    t0 = time.perf_counter()
    traffic = traffic_of(spec)
    candidates = enumerate_candidates(spec)
    if not candidates:
        raise InvalidInputError("no candidate deployment: widen --tp or --max-devices")
    total = len(candidates)
    shown = (lambda n: progress(n, total)) if progress else None
    predicted = screen_all(spec, candidates, traffic, workers, ray_address, shown)
    screen_s = time.perf_counter() - t0
    rows = []
    for i, (c, p) in enumerate(zip(candidates, predicted)):
        row = {"index": i, **_layout(c, p), "predicted": p}
        if p.get("feasible"):
            row["simulate_args"] = simulate_args(c, p, spec, engine_supported)
        rows.append(row)
    ranked = sorted((r for r in rows if r["predicted"].get("feasible")), key=_rank_key(spec.objective))
    confirmed = []
    if confirm is not None:
        for r in ranked[:spec.top_k]:
            r["simulated"] = confirmed_figures(confirm(r["simulate_args"]), spec, traffic, r["predicted"]["num_devices"],
                                               r["predicted"]["cost_cny"])
            confirmed.append(r)
    best = _best(confirmed, ranked, spec)
    return SearchResult(spec, rows, confirmed, best, pareto_front(rows), time.perf_counter() - t0, screen_s)


def _layout(c: Candidate, p: dict) -> dict:
    return {"hardware": c.hardware, "decode_hardware": c.decode_hardware or (c.hardware if c.disaggregated else None),
            "model": c.model, "tp": c.tp, "pp": c.pp, "ep": c.ep, "dp": c.dp, "decode_tp": c.decode_tp,
            "replicas": p.get("replicas", 0), "prefill_replicas": p.get("prefill_replicas", 0),
            "decode_replicas": p.get("decode_replicas", 0), "engine": c.engine, "dtype": c.dtype,
            "weight_dtype": c.weight_dtype or c.dtype, "kv_dtype": c.kv_dtype or "native",
            "max_num_seqs": c.max_num_seqs, "max_batched_tokens": c.max_batched_tokens,
            "disaggregated": c.disaggregated}


def _best(confirmed: list[dict], ranked: list[dict], spec: SearchSpec) -> dict | None:
    """Best confirmed row meeting the SLO by its simulated figure; else the top predicted one."""
    ok = [r for r in confirmed if r["simulated"]["meets_slo"]]
    if ok:
        key = OBJECTIVE_KEY[spec.objective]
        sign = 1 if spec.objective == "min-cost" else -1
        return min(ok, key=lambda r: (sign * (r["simulated"].get(key) or 0.0), r["index"]))
    return ranked[0] if ranked else None
