"""`tokenfab serve`: a real uvicorn server on 127.0.0.1 (free port, in a thread), called over HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from tokenfab import api
from tokenfab.server import ServerLimits, create_app

pytestmark = pytest.mark.unit

PREDICT = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "batch": 4, "input_len": 256, "output_len": 16}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url():
    limits = ServerLimits(max_body_bytes=20_000, max_requests_per_simulation=500, sync_simulation_requests=50,
                          max_call_s=30.0, max_job_s=60.0)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(limits), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _wait_job(client: httpx.Client, url: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(url).json()
        if job["status"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_predict_over_http_equals_the_api(base_url):
    r = httpx.post(f"{base_url}/predict", json=PREDICT, timeout=30)
    assert r.status_code == 200
    ref = api.predict(**PREDICT).to_dict()
    assert r.json()["tpot_s"] == pytest.approx(ref["tpot_s"]) and r.json()["fits"] == ref["fits"]


@pytest.mark.parametrize("body, needle", [
    ({**PREDICT, "batch": 0}, "batch must be >= 1, got 0"),
    ({**PREDICT, "hardware": "h1000"}, "unknown hardware 'h1000'"),
    ({**PREDICT, "dtype": "fp8", "hardware": "a100-sxm"}, "a100-sxm has no fp8 rate"),
    ({**PREDICT, "batchsize": 3}, "unexpected keyword argument 'batchsize'"),
    ({**PREDICT, "model": "/etc/passwd"}, "not a catalog name"),
])
def test_bad_input_is_a_400_with_the_cli_message(base_url, body, needle):
    r = httpx.post(f"{base_url}/predict", json=body, timeout=30)
    assert r.status_code == 400 and needle in r.json()["error"] and "\n" not in r.json()["error"]


def test_malformed_and_oversized_bodies(base_url):
    r = httpx.post(f"{base_url}/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert httpx.post(f"{base_url}/predict", json=[1, 2]).status_code == 400
    r = httpx.post(f"{base_url}/predict", json={"model": "x" * 30_000})
    assert r.status_code == 413 and "limit of 20,000" in r.json()["error"]


def test_op_and_catalog_endpoints(base_url):
    r = httpx.post(f"{base_url}/op/gemm", json={"hardware": "h100-sxm", "m": 4096, "n": 4096, "k": 4096})
    assert r.status_code == 200 and r.json()["bound"] in ("compute", "memory", "latency", "balanced")
    r = httpx.post(f"{base_url}/op/allreduce", json={"hardware": "h100-sxm", "devices": 8, "bytes": 1e6})
    assert r.status_code == 200 and r.json()["bus_bandwidth_bytes_per_s"] > 0
    assert httpx.post(f"{base_url}/op/gemmm", json={"m": 1, "n": 1, "k": 1}).status_code == 400
    assert "h100-sxm" in httpx.get(f"{base_url}/hardware").json()["chips"]
    assert httpx.get(f"{base_url}/hardware/h20").json()["name"] == "h20"
    assert "llama-3.1-8b" in httpx.get(f"{base_url}/models").json()["models"]
    spec = httpx.get(f"{base_url}/openapi.json").json()
    assert {"/predict", "/op/{kind}", "/simulate", "/search", "/plan", "/hardware", "/models", "/jobs/{job_id}"} <= set(spec["paths"])
    assert "batch" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_small_simulation_answers_at_once_big_one_is_a_job(base_url):
    body = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "rate": 5.0, "num_requests": 20, "input_len": 128,
            "output_len": 8}
    r = httpx.post(f"{base_url}/simulate", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["completed"] == 20
    with httpx.Client(timeout=30) as client:
        r = client.post(f"{base_url}/simulate", json={**body, "num_requests": 120})
        assert r.status_code == 202
        job = _wait_job(client, f"{base_url}{r.json()['status_url']}")
    assert job["status"] == "done" and job["result"]["completed"] == 120 and job["progress_frac"] == 1.0


def test_simulation_limits_and_bad_jobs(base_url):
    body = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "rate": 5.0}
    r = httpx.post(f"{base_url}/simulate", json={**body, "num_requests": 501})
    assert r.status_code == 400 and "limit of 500" in r.json()["error"]
    r = httpx.post(f"{base_url}/simulate", json={**body, "num_requests": 100, "rate": -1})
    assert r.status_code == 400 and "rate" in r.json()["error"]
    assert httpx.get(f"{base_url}/jobs/nope").status_code == 404


def test_search_is_501_until_the_api_has_it(base_url):
    r = httpx.post(f"{base_url}/search", json={"model": "llama-3.1-8b", "top": -1})
    if hasattr(api, "search"):  # bad input is refused before a job is queued
        assert r.status_code == 400 and "top must be >= 0" in r.json()["error"]
    else:
        assert r.status_code == 501 and "api.search" in r.json()["error"]


def test_plan_job_and_bad_plan(base_url):
    import yaml

    from pathlib import Path

    plan = yaml.safe_load((Path(__file__).resolve().parents[3] / "examples" / "fleet_2026_2028.yaml").read_text())
    plan["limits"] = {}  # the job's mechanics are under test here, not the example's power headroom
    with httpx.Client(timeout=60) as client:
        bad = {**plan, "models": [{**plan["models"][0], "name": "qwen3-32bx"}] + plan["models"][1:]}
        r = client.post(f"{base_url}/plan", json={"plan": bad})
        assert r.status_code == 400 and "unknown model 'qwen3-32bx'" in r.json()["error"]
        r = client.post(f"{base_url}/plan", json={"plan": plan})
        assert r.status_code == 202
        job = _wait_job(client, f"{base_url}{r.json()['status_url']}", 120)
    assert job["status"] == "done", job
    assert job["result"]["status"] == "optimal"


def test_concurrent_predicts_have_no_errors(base_url):
    """A small version of bench/serve_load.py (which runs 200 concurrent calls and reports p50/p99)."""
    async def burst(n: int) -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            replies = await asyncio.gather(*(client.post(f"{base_url}/predict", json={**PREDICT, "batch": 1 + i % 8})
                                             for i in range(n)))
        return [r.status_code for r in replies]

    assert asyncio.run(burst(40)) == [200] * 40


def test_serve_on_a_busy_port_is_one_line_exit_2(capsys):
    from tokenfab.cli.main import run

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            run(["serve", "--port", str(port)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err


def test_serve_refuses_bad_limits(capsys):
    from tokenfab.cli.main import run

    with pytest.raises(SystemExit) as exc:
        run(["serve", "--max-call-s", "nan"])
    assert exc.value.code == 2 and "max_call_s" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(api, "search"), reason="tokenfab.api.search is not in this build")
def test_search_job_over_http(base_url):
    body = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "rate": 2.0, "max_devices": 1, "top": 1, "num_requests": 50,
            "input_len": 256, "output_len": 32}
    with httpx.Client(timeout=30) as client:
        r = client.post(f"{base_url}/search", json=body)
        assert r.status_code == 202
        job = _wait_job(client, f"{base_url}{r.json()['status_url']}", 120)
    assert job["status"] == "done", job
    assert job["result"]["configs_evaluated"] >= 1 and job["result"]["best"]["tp"] == 1
