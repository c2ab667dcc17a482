"""Online metrics: per-request columns (numpy buffers that grow by doubling), time series in
fixed buckets, and the summary of the stable `simulate` interface."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import numpy as np

from tokenfab.serving.request import Request
from tokenfab.table_io import write_table

_COLUMNS = ("arrival_s", "first_token_s", "finish_s", "prompt_tokens", "output_tokens", "preemptions", "replica",
            "cached_prompt_tokens")


# one row of the log: 8 native doubles (what array('d') stores; ints convert exactly)
ROW = struct.Struct(f"={len(_COLUMNS)}d")


class RequestLog:
    """Completed requests as columns (8 numbers each; memory grows with completions only).

    Rows go into one flat bytearray of doubles, packed by one precompiled `struct` call (a third of what
    `array('d').extend` of a tuple costs, which parses each item separately, and the simulator logs every
    request: it appends `ROW.pack(...)` to `rows` itself); columns are read out as numpy copies."""

    def __init__(self) -> None:
        self.rows = bytearray()

    @property
    def n(self) -> int:
        """Requests logged."""
        return len(self.rows) // ROW.size

    def add(self, r: Request) -> None:
        self.rows += ROW.pack(r.arrival_s, r.first_token_s, r.finish_s, r.prompt_len, r.output_len,
                              r.preemptions, r.replica, r.cached_hit_tokens)

    def column(self, name: str) -> np.ndarray:
        # a copy: a live view would pin the buffer (an exporting bytearray cannot grow)
        return np.frombuffer(self.rows, dtype=np.float64).reshape(self.n, len(_COLUMNS))[:, _COLUMNS.index(name)].copy()

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame({c: self.column(c) for c in _COLUMNS})
        frame["ttft_s"] = frame.first_token_s - frame.arrival_s
        frame["e2e_s"] = frame.finish_s - frame.arrival_s
        out = frame.output_tokens
        frame["tpot_s"] = np.where(out > 1, (frame.finish_s - frame.first_token_s) / (out - 1).clip(lower=1), np.nan)
        for c in ("prompt_tokens", "output_tokens", "preemptions", "replica", "cached_prompt_tokens"):
            frame[c] = frame[c].astype(int)
        return frame


class TimeSeries:
    """Time-weighted batch size and KV utilisation per bucket of `interval_s` simulated seconds."""

    def __init__(self, interval_s: float = 1.0):
        self.interval_s = interval_s
        self.dt: list[float] = []
        self.batch: list[float] = []
        self.kv: list[float] = []

    def sample(self, t: float, dt: float, batch: int, kv_frac: float) -> None:
        """Busy time [t, t + dt) at this batch size and KV use, split over the buckets it spans; a negative dt
        takes back [t + dt, t) (a decode run cut short by an arrival)."""
        width = self.interval_s
        if dt >= 0:
            start, end = t, t + dt
        else:
            start, end = t + dt, t
        i = int(start / width)
        last = int(end / width)
        dts = self.dt
        if i == last and last < len(dts):  # the common case: within one bucket
            dts[i] += dt
            self.batch[i] += dt * batch
            self.kv[i] += dt * kv_frac
            return
        sign = 1.0 if dt >= 0 else -1.0
        if last >= len(self.dt):
            grow = last + 1 - len(self.dt)
            self.dt += [0.0] * grow
            self.batch += [0.0] * grow
            self.kv += [0.0] * grow
        while True:
            hi = min(end, (i + 1) * width)
            part = sign * (hi - max(start, i * width))
            self.dt[i] += part
            self.batch[i] += part * batch
            self.kv[i] += part * kv_frac
            if hi >= end or i >= last:
                break
            i += 1

    def to_frame(self):
        import pandas as pd

        dt = np.array(self.dt)
        safe = np.where(dt > 0, dt, 1.0)
        return pd.DataFrame({"time_s": np.arange(len(dt)) * self.interval_s, "busy_s": dt,
                             "mean_batch": np.array(self.batch) / safe, "kv_utilization": np.array(self.kv) / safe})

    def means(self) -> tuple[float, float]:
        total = sum(self.dt)
        if total <= 0:
            return 0.0, 0.0
        return sum(self.batch) / total, sum(self.kv) / total


def _stats(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "mean": float("nan")}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(x.mean())}


def summarize(log: RequestLog, *, energy_j: float, wall_s: float, preempted: int, rejected: Counter,
              slo_ttft_s: float | None, slo_tpot_s: float | None, prefix_hit_rate: float, series: TimeSeries) -> dict:
    """The stable `simulate` summary (seconds, tokens/s, joules)."""
    arrival, first, finish = log.column("arrival_s"), log.column("first_token_s"), log.column("finish_s")
    out = log.column("output_tokens")
    ttft = first - arrival
    e2e = finish - arrival
    multi = out > 1
    tpot = (finish[multi] - first[multi]) / (out[multi] - 1)
    span = float(finish.max() - arrival.min()) if log.n else 0.0
    tokens = float(out.sum())
    ok = np.ones(log.n, dtype=bool)
    if slo_ttft_s is not None:
        ok &= ttft <= slo_ttft_s
    if slo_tpot_s is not None:
        per_req_tpot = np.where(multi, (finish - first) / np.maximum(out - 1, 1), 0.0)
        ok &= per_req_tpot <= slo_tpot_s
    batch_mean, kv_mean = series.means()
    return {
        "overloaded": _overloaded(arrival, first),
        "ttft_s": _stats(ttft), "tpot_s": _stats(tpot), "e2e_s": _stats(e2e),
        "throughput_tokens_per_s": tokens / span if span > 0 else 0.0,
        "requests_per_s": log.n / span if span > 0 else 0.0,
        "goodput_requests_per_s": float(ok.sum()) / span if span > 0 else 0.0,
        "slo_attainment": float(ok.mean()) if log.n else 0.0,
        "energy_j_per_token": energy_j / tokens if tokens else 0.0,
        "energy_j": energy_j,
        "simulated_s": span,
        "sim_wall_s": wall_s,
        "completed": log.n,
        "preempted": preempted,
        "rejected": sum(rejected.values()),
        "rejected_reasons": dict(rejected),
        "prefix_cache_hit_rate": prefix_hit_rate,
        "mean_batch_size": batch_mean,
        "mean_kv_utilization": kv_mean,
        "output_tokens": tokens,
    }


def _overloaded(arrival: np.ndarray, first: np.ndarray) -> bool:
    """The queue grows without bound: waiting to start (TTFT) keeps rising from the first to the last third of
    the run by more than the run's first-third TTFT plus a tenth of the time it took to arrive."""
    n = len(arrival)
    if n < 30:
        return False
    order = np.argsort(arrival)
    ttft = (first - arrival)[order]
    third = n // 3
    early, late = float(np.median(ttft[:third])), float(np.median(ttft[-third:]))
    span = float(arrival[order[-1]] - arrival[order[0]])
    return late > 2.0 * early + 0.1 * span


def write_frame(frame, path: str | Path) -> Path:
    """CSV or Parquet by extension, written atomically."""
    return write_table(frame, path)
