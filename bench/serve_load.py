"""Load test of `tokenfab serve`: N concurrent POST /predict calls, latency percentiles and errors.

    python bench/serve_load.py [--concurrent 200] [--url http://127.0.0.1:8000]

Without --url it starts a real uvicorn server on a free 127.0.0.1 port in this process (one
worker, the default thread pool), sends all calls at once from one asyncio client, and prints
one JSON object: calls, errors, p50/p99/max latency in seconds, wall time and calls per second.
Each call is a different static batch (batch 1..16, three models) so the deployment cache is
warm for models but the predictions are fresh. Run by hand; numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time

import httpx
import numpy as np
import uvicorn

from tokenfab.server import ServerLimits, create_app

MODELS = ("llama-3.1-8b", "qwen3-8b", "llama-3.1-70b")


def start_server() -> tuple[str, uvicorn.Server]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ServerLimits()), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


async def load(url: str, n: int) -> dict:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def one(i: int) -> tuple[float, int]:
            body = {"model": MODELS[i % 3], "hardware": "h100-sxm", "tp": 8 if MODELS[i % 3] == "llama-3.1-70b" else 1,
                    "batch": 1 + i % 16, "input_len": 512 + 64 * (i % 7), "output_len": 64}
            t0 = time.perf_counter()
            r = await client.post(f"{url}/predict", json=body)
            return time.perf_counter() - t0, r.status_code

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    lat = np.array([r[0] for r in results])
    errors = sum(1 for r in results if r[1] != 200)
    return {"calls": n, "errors": errors, "p50_s": float(np.percentile(lat, 50)), "p99_s": float(np.percentile(lat, 99)),
            "max_s": float(lat.max()), "wall_s": wall, "calls_per_s": n / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrent", type=int, default=200)
    ap.add_argument("--url", default=None, help="an already running server (default: start one here)")
    args = ap.parse_args()
    url, server = (args.url, None) if args.url else start_server()
    asyncio.run(load(url, 3))  # warm the deployment caches, as a running server would be
    print(json.dumps(asyncio.run(load(url, args.concurrent)), indent=2))
    if server is not None:
        server.should_exit = True


if __name__ == "__main__":
    main()
