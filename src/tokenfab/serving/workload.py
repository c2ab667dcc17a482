"""What traffic arrives: arrival process and request lengths, synthetic or replayed.

Arrival processes: Poisson at a rate; gamma inter-arrivals with a coefficient of variation
(> 1 is burstier than Poisson); offline (all requests at t = 0, as in MLPerf offline);
closed loop with C clients (each sends its next request when its previous one finishes);
or replay of a trace file with an optional rate scale and time window. Lengths are fixed or
drawn from uniform, normal, lognormal or an empirical file. Requests are produced lazily,
so memory does not grow with the number of requests; randomness comes only from the
seeded generator passed in.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenfab.errors import DataFileError
from tokenfab.serving.request import Request
from tokenfab.serving.traces import MOONCAKE_BLOCK_TOKENS, read_trace

CHUNK = 8192  # requests drawn per numpy call


class LengthDist(BaseModel):
    """A distribution of token counts (clipped to [1, max_tokens], rounded)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["fixed", "uniform", "normal", "lognormal", "empirical"] = "fixed"
    value: int = Field(default=1024, ge=1, description="fixed: the length.")
    low: int = Field(default=1, ge=1, description="uniform: smallest length.")
    high: int = Field(default=2048, ge=1, description="uniform: largest length.")
    mean: float = Field(default=1024.0, gt=0, description="normal: mean; lognormal: mean of the lengths.")
    std: float = Field(default=256.0, ge=0, description="normal: standard deviation; lognormal: std of the lengths.")
    path: str | None = Field(default=None, description="empirical: a file with one length per line (or a CSV column 'tokens').")
    max_tokens: int = Field(default=1_000_000, ge=1)

    @model_validator(mode="after")
    def _check(self) -> LengthDist:
        if self.kind == "uniform" and self.low > self.high:
            raise ValueError(f"uniform lengths need low <= high (got {self.low} > {self.high})")
        if self.kind == "empirical" and not self.path:
            raise ValueError("empirical lengths need a path")
        return self

    def sampler(self, rng: np.random.Generator):
        """A function n -> int array of n lengths."""
        if self.kind == "fixed":
            return lambda n: np.full(n, min(self.value, self.max_tokens), dtype=np.int64)
        if self.kind == "uniform":
            return lambda n: rng.integers(self.low, self.high + 1, n)
        if self.kind == "normal":
            return lambda n: self._clip(rng.normal(self.mean, self.std, n))
        if self.kind == "lognormal":
            sigma2 = np.log1p((self.std / self.mean) ** 2)
            mu = np.log(self.mean) - sigma2 / 2
            return lambda n: self._clip(rng.lognormal(mu, np.sqrt(sigma2), n))
        values = _read_lengths(Path(self.path or ""))
        return lambda n: self._clip(rng.choice(values, n))

    def _clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x), 1, self.max_tokens).astype(np.int64)


def _read_lengths(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataFileError(f"length file {path} does not exist")
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if lines and not lines[0].replace(".", "").isdigit():
        header = [h.strip() for h in lines[0].split(",")]
        col = header.index("tokens") if "tokens" in header else 0
        lines = [ln.split(",")[col] for ln in lines[1:]]
    try:
        values = np.array([float(v) for v in lines])
    except ValueError:
        raise DataFileError(f"{path}: lengths must be numbers") from None
    if len(values) == 0 or (values <= 0).any():
        raise DataFileError(f"{path}: needs at least one length, all > 0")
    return values


class TraceSpec(BaseModel):
    """Replay of a trace file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    format: Literal["auto", "azure", "mooncake"] = "auto"
    rate_scale: float = Field(default=1.0, gt=0, description="Arrival-rate multiplier (2 = twice as fast).")
    start_s: float = Field(default=0.0, ge=0, description="Skip requests before this time.")
    duration_s: float | None = Field(default=None, gt=0, description="Keep requests within this window.")
    repeat: bool = Field(default=False, description="Loop the trace (shifted in time) to reach num_requests.")


class WorkloadSpec(BaseModel):
    """The traffic of one simulation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arrival: Literal["poisson", "gamma", "offline", "closed", "trace"] = "poisson"
    rate: float = Field(default=1.0, gt=0, description="Requests per second (poisson, gamma).")
    cv: float = Field(default=1.0, gt=0, description="gamma: coefficient of variation of inter-arrival times.")
    concurrency: int = Field(default=1, ge=1, description="closed: number of clients.")
    think_time_s: float = Field(default=0.0, ge=0, description="closed: mean (exponential) delay between a response and the client's next request.")
    num_requests: int = Field(default=1000, ge=1, description="Requests measured (after the warm-up ones).")
    warmup_requests: int = Field(default=0, ge=0, description="Requests sent first and left out of the metrics, as benchmark "
                                                             "clients do (aiperf/genai-perf --warmup-request-count).")
    input: LengthDist = LengthDist(value=1024)
    output: LengthDist = LengthDist(value=256)
    trace: TraceSpec | None = None
    shared_prefix_tokens: int = Field(default=0, ge=0, description="Synthetic: a system prompt of this many tokens shared by all requests.")
    prefix_block_tokens: int = Field(default=16, ge=1, description="Synthetic: token granularity of shared-prefix hashes.")

    @model_validator(mode="after")
    def _check(self) -> WorkloadSpec:
        if self.arrival == "trace" and self.trace is None:
            raise ValueError("arrival 'trace' needs a trace")
        return self

    desync_warmup: bool = Field(default=False, description="closed: give client c's warm-up request (c+1)/C of its output "
                                                           "length, so the measured requests start from the desynchronised "
                                                           "steady state real servers drift into (see simulate docs).")

    @property
    def total_requests(self) -> int:
        """Requests sent: the warm-up ones plus the measured ones."""
        return self.num_requests + self.warmup_requests

    @property
    def hash_block_tokens(self) -> int:
        return MOONCAKE_BLOCK_TOKENS if self.arrival == "trace" else self.prefix_block_tokens


def synthetic_lengths(spec: WorkloadSpec, rng: np.random.Generator) -> Iterator[tuple[int, int, tuple[int, ...] | None]]:
    """Endless (prompt, output, hash_ids) triples from the length distributions."""
    sample_in, sample_out = spec.input.sampler(rng), spec.output.sampler(rng)
    shared_blocks = spec.shared_prefix_tokens // spec.prefix_block_tokens
    next_id = shared_blocks
    while True:
        ins, outs = sample_in(CHUNK), sample_out(CHUNK)
        for p, o in zip(ins.tolist(), outs.tolist()):
            if shared_blocks:
                prompt = max(p, spec.shared_prefix_tokens + 1) if p > 0 else p
                own = max(0, prompt // spec.prefix_block_tokens - shared_blocks)
                hashes = tuple(range(shared_blocks)) + tuple(range(next_id, next_id + own))
                next_id += own
                yield prompt, o, hashes
            else:
                yield p, o, None


def _gaps(spec: WorkloadSpec, rng: np.random.Generator) -> np.ndarray:
    """The next CHUNK inter-arrival times of an open-loop synthetic workload."""
    if spec.arrival == "offline":
        return np.zeros(CHUNK)
    if spec.arrival == "poisson":
        return rng.exponential(1.0 / spec.rate, CHUNK)
    shape = 1.0 / spec.cv**2  # gamma with mean 1/rate and the given coefficient of variation
    return rng.gamma(shape, 1.0 / (spec.rate * shape), CHUNK)


def arrival_times(spec: WorkloadSpec, rng: np.random.Generator) -> Iterator[float]:
    """Endless arrival times of an open-loop synthetic workload."""
    t = 0.0
    while True:
        for g in _gaps(spec, rng).tolist():
            t += g
            yield t


def open_loop_requests(spec: WorkloadSpec, rng: np.random.Generator) -> Iterator[Request]:
    """Requests of an open-loop workload (synthetic or trace) in arrival order, at most num_requests. Lazy: nothing
    is drawn from `rng` before the first request is asked for."""
    if spec.arrival == "trace":
        return _trace_requests(spec)
    if not spec.shared_prefix_tokens:
        return itertools.chain.from_iterable(_plain_open_loop(spec, rng))
    return _prefixed_open_loop(spec, rng)


def _prefixed_open_loop(spec: WorkloadSpec, rng: np.random.Generator) -> Iterator[Request]:
    offline = spec.arrival == "offline"
    # zip stops at the range: the last request draws nothing more from the generator (the simulator's hot loop)
    for rid, t, (p, o, h) in zip(range(spec.total_requests), arrival_times(spec, rng), synthetic_lengths(spec, rng)):
        yield Request(rid, 0.0 if offline else t, p, o, h)


def _plain_open_loop(spec: WorkloadSpec, rng: np.random.Generator) -> Iterator[Iterator[Request]]:
    """`open_loop_requests` without prefix hashes, a chunk of requests at a time, each made when it is asked for (the
    simulator reads them through one C-level chain of maps, with no generator frame resumed per request, and only
    the requests that arrived are objects the collector tracks): the same draws in the same order (a chunk's
    gaps, then its prompt and output lengths, nothing after the last request) and the same sequential sum of the
    gaps (numpy's cumulative sum adds in order, starting from the previous chunk's last time)."""
    offline = spec.arrival == "offline"
    total = spec.total_requests
    rid, t = 0, 0.0
    sample_in = sample_out = None
    while rid < total:
        gaps = _gaps(spec, rng)
        if sample_in is None:
            sample_in, sample_out = spec.input.sampler(rng), spec.output.sampler(rng)
        ins, outs = sample_in(CHUNK).tolist(), sample_out(CHUNK).tolist()
        n = min(CHUNK, total - rid)
        if offline:
            times = [0.0] * n
        else:
            times = np.cumsum(np.concatenate(([t], gaps[:n])))[1:].tolist()
            t = times[-1]
        yield map(Request, range(rid, rid + n), times, ins[:n], outs[:n])  # lazy: one request made per arrival
        rid += n


def _trace_requests(spec: WorkloadSpec) -> Iterator[Request]:
    tr = spec.trace
    assert tr is not None
    rid, shift, end = 0, 0.0, (tr.start_s + tr.duration_s) if tr.duration_s else None
    copy = 0
    while rid < spec.total_requests:
        emitted, last = 0, 0.0
        for row in read_trace(tr.path, tr.format):
            if row.arrival_s < tr.start_s:
                continue
            if end is not None and row.arrival_s > end:
                break
            last = row.arrival_s - tr.start_s
            hashes = row.hash_ids
            if copy and hashes:  # a repeated copy is new traffic: its prefixes are not the first copy's
                hashes = tuple(h + (copy << 40) for h in hashes)
            yield Request(rid, (shift + last) / tr.rate_scale, row.prompt_len, row.output_len, hashes)
            rid += 1
            emitted += 1
            if rid >= spec.total_requests:
                return
        if not tr.repeat or emitted == 0:
            return
        shift += last + (last / max(emitted, 1))  # next copy starts one mean gap after the last arrival
        copy += 1
