"""What a deployment search explores: the question (`SearchSpec`) and its candidates (`Candidate`).

A candidate is one way to serve the traffic: a model on a chip (or, disaggregated, a prefill pool
on one chip and a decode pool on another), its parallel plan, weight and KV formats, the engine's
batch limits, and how many replicas. `enumerate_candidates` lists every combination the spec
allows that is structurally valid (TP within the scale-up domain, devices within the limit);
whether it fits memory and meets the SLO is the screen's business.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenfab.hardware.catalog import load_chip
from tokenfab.serving.engines import engine_names, engine_spec
from tokenfab.search.plan_capacity import compute_dtype

Objective = Literal["goodput-per-chip", "goodput-per-cost", "goodput-per-watt", "min-cost"]
OBJECTIVES: tuple[str, ...] = ("goodput-per-chip", "goodput-per-cost", "goodput-per-watt", "min-cost")
ENGINES: tuple[str, ...] = ("vllm", "sglang", "trtllm")


class SearchSpec(BaseModel):
    """The deployment question: models, traffic, SLO, candidate hardware and the knobs to explore."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[str, ...] = Field(min_length=1, description="Models to serve (catalog names or config.json paths).")
    hardware: tuple[str, ...] = Field(min_length=1, description="Candidate chips (catalog names or YAML paths).")
    rate: float | None = Field(default=None, gt=0, description="Open-loop arrival rate, requests/s.")
    concurrency: int | None = Field(default=None, ge=1, description="Closed-loop clients (as serving benchmarks run).")
    trace: str | None = Field(default=None, description="Trace file: its mean rate and lengths drive the screen.")
    input_len: int = Field(default=1024, ge=1, description="Mean prompt length, tokens.")
    output_len: int = Field(default=256, ge=2, description="Mean output length, tokens.")
    input_dist: str | None = Field(default=None, description="Prompt length distribution for the confirmation runs.")
    output_dist: str | None = Field(default=None, description="Output length distribution for the confirmation runs.")
    slo_ttft_s: float = Field(gt=0, description="Time-to-first-token target, s.")
    slo_tpot_s: float = Field(gt=0, description="Time-per-output-token target, s.")
    slo_percentile: float = Field(default=99.0, gt=0, le=100, description="Percentile the targets apply to.")
    max_devices: int = Field(default=64, ge=1, description="Most devices a deployment may use in all.")
    objective: Objective = Field(default="goodput-per-chip", description="What 'best' means.")
    budget_cny: float | None = Field(default=None, gt=0, description="Most the accelerators may cost, CNY.")
    top_k: int = Field(default=5, ge=0, description="Candidates confirmed by simulation.")
    tp: tuple[int, ...] = Field(default=(1, 2, 4, 8), min_length=1, description="Tensor-parallel degrees tried.")
    pp: tuple[int, ...] = Field(default=(1,), min_length=1, description="Pipeline depths tried.")
    ep: tuple[int, ...] = Field(default=(1,), min_length=1, description="Expert-parallel degrees tried (MoE models).")
    weight_dtypes: tuple[str, ...] = Field(default=("native",), min_length=1, description="Weight formats ('native' = compute format).")
    kv_dtypes: tuple[str, ...] = Field(default=("native",), min_length=1, description="KV-cache formats ('native' = 16-bit).")
    max_num_seqs: tuple[int, ...] | None = Field(default=None, min_length=1, description="Engine max sequences tried (None: each engine's default).")
    max_batched_tokens: tuple[int, ...] | None = Field(default=None, min_length=1, description="Engine token budgets tried (None: each engine's default).")
    engines: tuple[str, ...] = Field(default=("vllm",), min_length=1, description="Serving engines tried.")
    disaggregated: bool = Field(default=False, description="Also try P/D disaggregation (prefill and decode pools).")
    num_requests: int = Field(default=1000, ge=10, description="Requests per confirmation simulation.")
    seed: int = Field(default=0, description="Seed of the confirmation simulations.")

    @model_validator(mode="after")
    def _one_traffic(self) -> SearchSpec:
        for e in self.engines:
            if e not in engine_names():
                from tokenfab.errors import UnknownNameError

                raise UnknownNameError("engine", e, engine_names())
        if sum(x is not None for x in (self.rate, self.concurrency, self.trace)) != 1:
            raise ValueError("choose exactly one of --rate, --concurrency, --trace")
        if self.objective == "min-cost" and self.rate is None and self.trace is None:
            raise ValueError("min-cost needs a target rate (--rate or --trace)")
        return self


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to serve the traffic (P/D when decode_replicas > 0; pools may use different chips)."""

    model: str
    hardware: str
    tp: int
    pp: int = 1
    ep: int = 1
    dp: int = 1
    dtype: str = "bf16"
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    engine: str = "vllm"
    max_num_seqs: int = 256
    max_batched_tokens: int = 8192
    decode_hardware: str | None = None  # P/D only
    decode_tp: int | None = None  # P/D only
    disaggregated: bool = False

    @property
    def devices_per_replica(self) -> int:
        return self.tp * self.pp * self.dp

    def to_dict(self) -> dict:
        return asdict(self)


def _resolved(engine: str, hw: str, tp: int, seqs: int | None, tokens: int | None) -> tuple[int, int]:
    """Explicit engine limits, or the engine's defaults on this chip (written out so that the
    simulation and the emitted launch flags use the very values the screen assumed)."""
    if seqs is not None and tokens is not None:
        return seqs, tokens
    eng = engine_spec(engine, load_chip(hw).device_memory_bytes, tp)
    return seqs or eng.max_num_seqs, tokens or eng.max_num_batched_tokens


def _domain(chip_name: str) -> int:
    chip = load_chip(chip_name)
    return chip.scale_up.domain_size if chip.scale_up else 1


def _formats(spec: SearchSpec) -> list[tuple[str | None, str | None]]:
    weights = [None if w == "native" else w for w in spec.weight_dtypes]
    kvs = [None if k == "native" else k for k in spec.kv_dtypes]
    return list(itertools.product(weights, kvs))


def enumerate_candidates(spec: SearchSpec) -> list[Candidate]:
    """Every structurally valid candidate, in a fixed order (the order results are reported in)."""
    out: list[Candidate] = []
    limits = list(itertools.product(spec.engines, spec.max_num_seqs or (None,), spec.max_batched_tokens or (None,)))
    for model, hw in itertools.product(spec.models, spec.hardware):
        dtype, domain = compute_dtype(hw), _domain(hw)
        for tp, pp, ep in itertools.product(spec.tp, spec.pp, spec.ep):
            if tp > domain or tp * pp > spec.max_devices or ep > tp:
                continue
            for (w, kv), (engine, seqs, tokens) in itertools.product(_formats(spec), limits):
                seqs, tokens = _resolved(engine, hw, tp, seqs, tokens)
                out.append(Candidate(model, hw, tp, pp, ep, 1, dtype, w, kv, engine, seqs, tokens))
    if spec.disaggregated and spec.concurrency is None:
        out += _disaggregated(spec)
    return out


def _disaggregated(spec: SearchSpec) -> list[Candidate]:
    """P/D candidates: a prefill pool on any candidate chip, a decode pool on any (mixed vendors)."""
    out = []
    engines = spec.engines
    for model, hp, hd in itertools.product(spec.models, spec.hardware, spec.hardware):
        for tp_p, tp_d in itertools.product(spec.tp, spec.tp):
            if tp_p > _domain(hp) or tp_d > _domain(hd) or tp_p + tp_d > spec.max_devices:
                continue
            if compute_dtype(hp) != compute_dtype(hd):
                continue  # one compute format for both pools (the KV handed over keeps its format)
            for (w, kv), engine, tokens in itertools.product(_formats(spec), engines, spec.max_batched_tokens or (None,)):
                seqs, tokens = _resolved(engine, hd, tp_d, max(spec.max_num_seqs) if spec.max_num_seqs else None, tokens)
                out.append(Candidate(model, hp, tp_p, 1, 1, 1, compute_dtype(hp), w, kv, engine, seqs,
                                     tokens, decode_hardware=hd, decode_tp=tp_d, disaggregated=True))
    return out
