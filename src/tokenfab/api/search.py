"""`search`: the best deployment under an SLO (screened by the step model, confirmed by `simulate`)."""

from __future__ import annotations

import inspect

from tokenfab.api.boundary import validated
from tokenfab.api.simulate import simulate
from tokenfab.errors import InvalidInputError


def _spec(**kw):
    from pydantic import ValidationError

    from tokenfab.search.space import SearchSpec

    try:
        return SearchSpec(**kw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "search"
        raise InvalidInputError(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None


def _confirm(args: dict) -> dict:
    return simulate(**args).summary


@validated
def search(
    model: str | list[str] = "llama-3.1-8b", hardware: str | list[str] = "h100-sxm", *, rate: float | None = None,
    concurrency: int | None = None, trace: str | None = None, input_len: int = 1024, output_len: int = 256,
    input_dist: str | None = None, output_dist: str | None = None, slo_ttft_ms: float = 2000.0,
    slo_tpot_ms: float = 50.0, slo_percentile: float = 99.0, max_devices: int = 64, objective: str = "goodput-per-chip",
    budget_cny: float | None = None, top: int = 5, tp: list[int] | None = None, pp: list[int] | None = None,
    ep: list[int] | None = None, weight_dtype: list[str] | None = None, kv_dtype: list[str] | None = None,
    max_num_seqs: list[int] | None = None, max_batched_tokens: list[int] | None = None,
    engine: list[str] | None = None, disaggregated: bool = False, num_requests: int = 1000, seed: int = 0,
    workers: int = 1, ray: str | None = None, progress=None,
):
    """Search deployments (see `tokenfab search --help`); returns a SearchResult (to_dict() = the CLI JSON)."""
    from tokenfab.hardware.catalog import load_chip
    from tokenfab.search.run import search_deployments
    from tokenfab.workload.hf_config import load_model

    models = [model] if isinstance(model, str) else list(model)
    chips = [hardware] if isinstance(hardware, str) else list(hardware)
    for m in models:
        load_model(m)  # unknown names fail here, with the nearest valid ones
    for h in chips:
        load_chip(h)
    if workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {workers}")
    opt = {k: tuple(v) for k, v in {"tp": tp, "pp": pp, "ep": ep, "weight_dtypes": weight_dtype, "kv_dtypes": kv_dtype,
                                    "max_num_seqs": max_num_seqs, "max_batched_tokens": max_batched_tokens,
                                    "engines": engine}.items() if v}
    spec = _spec(models=tuple(models), hardware=tuple(chips), rate=rate, concurrency=concurrency, trace=trace,
                 input_len=input_len, output_len=output_len, input_dist=input_dist, output_dist=output_dist,
                 slo_ttft_s=slo_ttft_ms / 1e3, slo_tpot_s=slo_tpot_ms / 1e3, slo_percentile=slo_percentile,
                 max_devices=max_devices, objective=objective, budget_cny=budget_cny, top_k=top,
                 disaggregated=disaggregated, num_requests=num_requests, seed=seed, **opt)
    engine_supported = "engine" in inspect.signature(simulate).parameters
    return search_deployments(spec, _confirm, workers=workers, ray_address=ray, engine_supported=engine_supported,
                              progress=progress)
