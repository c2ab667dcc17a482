"""`tokenfab serve`: the API over HTTP/JSON (see tokenfab.server)."""

from __future__ import annotations

from typing import Annotated

import typer

from tokenfab.cli.main import app, err
from tokenfab.errors import InvalidInputError

Opt = typer.Option


@app.command()
def serve(
    host: Annotated[str, Opt(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, Opt(help="TCP port.")] = 8000,
    max_body_bytes: Annotated[int, Opt(help="Largest request body, bytes.")] = 1_000_000,
    max_requests: Annotated[int, Opt(help="Largest num_requests of one simulation.")] = 20_000,
    sync_requests: Annotated[int, Opt(help="Simulations of more requests run as background jobs.")] = 2_000,
    max_call_s: Annotated[float, Opt(help="Time limit of an immediate call, s.")] = 60.0,
    max_job_s: Annotated[float, Opt(help="Time limit of a background job, s.")] = 600.0,
    job_workers: Annotated[int, Opt(help="Background jobs that run at once.")] = 2,
) -> None:
    """Serve the API over HTTP/JSON: POST /predict, /op/{kind}, /simulate, /search, /plan; GET /hardware,
    /models, /jobs/{id}, /openapi.json (interactive docs at /docs)."""
    import uvicorn
    from pydantic import ValidationError

    from tokenfab.server import ServerLimits, create_app

    if not 0 <= port <= 65535:
        raise InvalidInputError(f"--port must lie in 0..65535, got {port}")
    try:
        limits = ServerLimits(max_body_bytes=max_body_bytes, max_requests_per_simulation=max_requests,
                              sync_simulation_requests=sync_requests, max_call_s=max_call_s, max_job_s=max_job_s,
                              num_job_workers=job_workers)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInputError(f"bad server limit {first['loc'][0]}={first['input']!r}: {first['msg']}") from None
    _check_free(host, port)
    err.print(f"tokenfab serving on http://{host}:{port} (docs at /docs); Ctrl-C stops")
    uvicorn.run(create_app(limits), host=host, port=port, log_level="warning")


def _check_free(host: str, port: int) -> None:
    """uvicorn exits 1 on a busy port or a bad host; as user input that is a one-line exit 2."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise InvalidInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
