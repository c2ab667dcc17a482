"""`tokenfab serve`: the Python API over HTTP/JSON (FastAPI).

Request bodies are JSON objects whose keys are the API's parameter names (`POST /predict` with
`{"model": "llama-3.1-8b", "batch": 8}` is `api.predict(model="llama-3.1-8b", batch=8)`), so
the same boundary validation answers: a bad value is a 400 whose `error` is the CLI's one-line
message. Short calls answer at once; long ones (search, plan, simulations above a size) answer
202 with a job id to poll at `GET /jobs/{id}`. Limits (body size, requests per simulation, time
per call) are a `ServerLimits`, documented in its fields and `tokenfab serve --help`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tokenfab import api
from tokenfab.errors import TokenfabError
from tokenfab.server.jobs import JobStore


class ServerLimits(BaseModel):
    """What one client may ask of the server; defaults suit a shared workstation."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_body_bytes: int = Field(default=1_000_000, ge=1_000, description="Largest request body, bytes (413 above).")
    max_requests_per_simulation: int = Field(
        default=20_000, ge=1, description="Largest num_requests of one /simulate call (400 above).")
    sync_simulation_requests: int = Field(
        default=2_000, ge=0, description="Simulations of more requests run as background jobs (202 + job id).")
    max_call_s: float = Field(default=60.0, gt=0, description="Time limit of an immediate call, s (504 after it).")
    max_job_s: float = Field(default=600.0, gt=0, description="Time limit of a background job, s (then 'failed').")
    num_job_workers: int = Field(default=2, ge=1, le=64, description="Background jobs that run at once.")


class HTTPProblem(Exception):
    """A request the server refuses, with its status code and one-line reason."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite floats become null, numpy scalars plain numbers, tuples lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _result_dict(result: Any) -> Any:
    return _plain(result.to_dict() if hasattr(result, "to_dict") else result)


def _body_doc(fn: Callable, drop: tuple[str, ...] = ()) -> dict:
    """OpenAPI request body of an API function, from the model its boundary validator checks against."""
    model = getattr(fn, "arguments_model", None)
    if model is None:
        return {}
    schema = model.model_json_schema()
    for name in drop:
        schema.get("properties", {}).pop(name, None)
        if name in schema.get("required", []):
            schema["required"].remove(name)
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


async def _json_body(request: Request, limit_bytes: int) -> dict:
    """The request's JSON object, refusing bodies over the limit without reading them whole."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit_bytes:
        raise HTTPProblem(413, f"request body of {int(declared):,} bytes exceeds the server's limit of {limit_bytes:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise HTTPProblem(413, f"request body exceeds the server's limit of {limit_bytes:,} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPProblem(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HTTPProblem(400, f"request body must be a JSON object of parameters, not {type(body).__name__}")
    return body


def create_app(limits: ServerLimits | None = None) -> FastAPI:
    """The FastAPI application (a function, so tests and `tokenfab serve` choose the limits)."""
    limits = limits or ServerLimits()
    jobs = JobStore(num_workers=limits.num_job_workers)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()

    app = FastAPI(title="tokenfab", version=_version(), lifespan=lifespan,
                  description="Predict, simulate and plan AI inference on accelerators. Bodies use the Python "
                              "API's parameter names; errors are {'error': one line}.")
    app.state.limits, app.state.jobs = limits, jobs

    @app.exception_handler(HTTPProblem)
    async def _problem(_request: Request, exc: HTTPProblem) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(TokenfabError)
    async def _bad_input(_request: Request, exc: TokenfabError) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(exc).split())}, status_code=400)

    async def immediate(call: Callable[[], Any]) -> JSONResponse:
        try:
            result = await asyncio.wait_for(run_in_threadpool(call), timeout=limits.max_call_s)
        except TimeoutError:
            raise HTTPProblem(504, f"the call exceeded the server's time limit of {limits.max_call_s:g} s; "
                                   "ask for fewer requests or run it as a job ({\"background\": true})") from None
        return JSONResponse(_result_dict(result))

    def background(kind: str, call: Callable[[], Any]) -> JSONResponse:
        job = jobs.submit(kind, lambda: _result_dict(call()), limits.max_job_s)
        return JSONResponse({"job_id": job.job_id, "status": job.status, "status_url": f"/jobs/{job.job_id}"},
                            status_code=202)

    _routes_catalog(app)
    _routes_compute(app, limits, immediate, background)

    @app.get("/jobs/{job_id}", summary="Status, progress and result of a background job")
    def job_status(job_id: str) -> JSONResponse:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPProblem(404, f"unknown job '{job_id}' (jobs are kept while the server runs, at most 1000)")
        return JSONResponse(_plain(job.to_dict(time.monotonic())))

    return app


def _routes_catalog(app: FastAPI) -> None:
    from tokenfab.hardware.catalog import chip_names, load_chip, load_system, system_names
    from tokenfab.workload.hf_config import load_model, model_names

    @app.get("/hardware", summary="Chips and systems in the catalog")
    def hardware() -> dict:
        return {"chips": chip_names(), "systems": system_names()}

    @app.get("/hardware/{name}", summary="Every field of a chip or system, SI, with sources")
    def hardware_one(name: str) -> JSONResponse:
        spec = load_system(name) if name in system_names() else load_chip(_catalog_only(name))
        return JSONResponse(_plain(spec.model_dump(mode="json", exclude_none=True)))

    @app.get("/models", summary="Bundled models")
    def models() -> dict:
        return {"models": model_names()}

    @app.get("/models/{name}", summary="Architecture of a bundled model")
    def models_one(name: str) -> JSONResponse:
        return JSONResponse(_plain(load_model(_catalog_only(name)).model_dump(mode="json")))


def _catalog_only(name: str) -> str:
    """Names over HTTP are catalog names: a path would let a client read the server's files."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise HTTPProblem(400, f"'{name}' is not a catalog name (paths are not accepted over HTTP)")
    return name


def _no_paths(body: dict, *keys: str) -> None:
    for key in ("model", "hardware", *keys):
        value = body.get(key)
        if isinstance(value, str):
            _catalog_only(value)


def _routes_compute(app: FastAPI, limits: ServerLimits, immediate: Callable, background: Callable) -> None:
    @app.post("/predict", summary="Static batch: latency, throughput, memory, energy", openapi_extra=_body_doc(api.predict))
    async def predict(request: Request) -> JSONResponse:
        body = await _json_body(request, limits.max_body_bytes)
        _no_paths(body)
        return await immediate(functools.partial(api.predict, **body))

    @app.post("/op/{kind}", summary="Cost of one operator (gemm, attention, allreduce, ...)",
              openapi_extra=_body_doc(api.op, drop=("name",)))
    async def op(kind: str, request: Request) -> JSONResponse:
        body = await _json_body(request, limits.max_body_bytes)
        _no_paths(body)
        if "name" in body:
            raise HTTPProblem(400, "the operator is named in the path (/op/{kind}); drop 'name' from the body")
        return await immediate(functools.partial(api.op, kind, **body))

    @app.post("/simulate", summary="Serving simulation (a job above the server's size for immediate calls)",
              openapi_extra=_body_doc(api.simulate))
    async def simulate(request: Request) -> JSONResponse:
        body = await _json_body(request, limits.max_body_bytes)
        as_job = bool(body.pop("background", False))
        _no_paths(body, "trace")
        if body.get("trace") is not None:
            raise HTTPProblem(400, "trace files are not read over HTTP; send a synthetic workload "
                                   "(rate, concurrency or offline with lengths)")
        num = body.get("num_requests")
        if num is None:  # the API's default for synthetic traffic
            num = 1000
        if isinstance(num, int) and num > limits.max_requests_per_simulation:
            raise HTTPProblem(400, f"num_requests {num:,} exceeds the server's limit of "
                                   f"{limits.max_requests_per_simulation:,} per simulation")
        body["progress"] = False  # a progress bar would go to the server's terminal
        call = functools.partial(api.simulate, **body)
        if as_job or (isinstance(num, int) and num > limits.sync_simulation_requests):
            api.simulate.check_arguments(**body)  # bad input: 400 now, not a failed job later
            return background("simulate", call)
        return await immediate(call)

    @app.post("/search", summary="Deployment search under SLOs (background job)")
    async def search(request: Request) -> JSONResponse:
        body = await _json_body(request, limits.max_body_bytes)
        fn = getattr(api, "search", None)
        if fn is None:
            raise HTTPProblem(501, "search is not available in this build (tokenfab.api.search is missing)")
        _no_paths(body)
        if hasattr(fn, "check_arguments"):
            fn.check_arguments(**body)  # bad input: 400 now, not a failed job later
        return background("search", functools.partial(fn, **body))

    @app.post("/plan", summary="Fleet purchase plan (background job); body {'plan': {...}, 'predictor': true}")
    async def plan(request: Request) -> JSONResponse:
        body = await _json_body(request, limits.max_body_bytes)
        spec, predictor = _plan_spec(body)
        from tokenfab.fleet import plan_fleet

        return background("plan", lambda: plan_fleet(spec, capacity_provider=api.predicted_capacity if predictor else None))


def _plan_spec(body: dict):
    """The plan in the body, checked now (a bad plan is a 400, not a failed job)."""
    from tokenfab.api.capacity import check_plan_models
    from tokenfab.fleet.loader import parse_plan

    unknown = sorted(set(body) - {"plan", "predictor"})
    if unknown:
        raise HTTPProblem(400, f"unknown key(s) {', '.join(unknown)} in the body (valid: plan, predictor)")
    if not isinstance(body.get("plan"), dict):
        raise HTTPProblem(400, "the body needs 'plan': the plan file's content as a JSON object")
    predictor = body.get("predictor", True)
    if not isinstance(predictor, bool):
        raise HTTPProblem(400, f"'predictor' must be true or false, got {predictor!r}")
    spec = parse_plan(body["plan"], " (request body)")
    check_plan_models(spec, predictor)
    return spec, predictor


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tokenfab")
    except PackageNotFoundError:
        return "0"
