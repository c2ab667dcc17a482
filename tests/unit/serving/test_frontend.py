"""The serial front end (`EngineSpec.frontend_s`): one single-threaded stage every request passes before the engine
sees it (an API server's request handling, chat template and tokenizer in one process), after the unserialised
client-engine latency. Hand-computed timings on a stub step model, and the TensorRT-LLM fit as data."""

import pytest
import yaml
from test_simulator import FixedTimer  # the simulator tests' stub step model

from tokenfab.hardware.catalog import load_chip
from tokenfab.serving import engines
from tokenfab.serving.engines import engine_spec
from tokenfab.serving.replica import ReplicaSpec
from tokenfab.serving.simulator import Simulation
from tokenfab.serving.workload import LengthDist, WorkloadSpec

pytestmark = pytest.mark.unit


def _entry_and_first_token(frontend_s: float, latency_s: float, concurrency: int = 4) -> tuple[list[float], list[float]]:
    """Arrival and first-token times of the first wave of `concurrency` one-token requests sent together at t=0."""
    spec = ReplicaSpec(step=FixedTimer(0.001), kv_blocks=10_000, max_num_seqs=64, prefix_caching=False)
    wl = WorkloadSpec(arrival="closed", concurrency=concurrency, num_requests=concurrency, input=LengthDist(value=16),
                      output=LengthDist(value=1))
    res = Simulation([spec], wl, frontend_s=frontend_s, request_latency_s=latency_s).run()
    return sorted(res.log.column("arrival_s")), sorted(res.log.column("first_token_s"))


def test_requests_sent_together_enter_the_engine_one_front_end_time_apart():
    # Four requests at t=0, 10 ms latency, 5 ms serial front end: they reach the engine at 15, 20, 25, 30 ms. The
    # first runs its 1 ms step alone (first token at 16 ms); each later one arrives while the engine is idle again,
    # so its first token comes 1 ms after it entered.
    arrivals, first = _entry_and_first_token(0.005, 0.010)
    assert arrivals == [0.0] * 4
    assert first == pytest.approx([0.016, 0.021, 0.026, 0.031])


def test_without_a_front_end_the_wave_prefills_together():
    # all four reach the engine at 10 ms: the first starts an iteration on its own (the engine was idle), the other
    # three share the next one
    _, first = _entry_and_first_token(0.0, 0.010)
    assert first == pytest.approx([0.011, 0.012, 0.012, 0.012])


def test_a_busy_front_end_queues_requests_sent_later():
    # 0.1 s front end, 8 clients: the k-th request of the first wave waits k front-end times, so the mean TTFT of the
    # wave is (1 + 2 + ... + 8) / 8 x 0.1 s = 0.45 s plus the 1 ms step.
    _, first = _entry_and_first_token(0.1, 0.0, concurrency=8)
    assert sum(first) / 8 == pytest.approx(0.45 + 0.001, rel=1e-6)


def test_trtllm_front_end_is_the_fitted_value_with_provenance():
    data = yaml.safe_load(engines.OVERHEADS_PATH.read_text())
    row = data["engines"]["trtllm"]
    assert "--frontend-only" in data["provenance"]["frontend"]["command"]
    assert row["frontend_s"] in data["provenance"]["frontend"]["grid_s"]
    # the choice is the grid value with the best fit-half score, and it is what the engine runs with
    scores = row["frontend_fit_half_score"]
    assert min(scores, key=scores.get) == f"{row['frontend_s'] * 1e3:g}ms"
    assert engine_spec("trtllm", load_chip("h100-sxm").device_memory_bytes).frontend_s == row["frontend_s"]
    assert engine_spec("vllm", load_chip("h100-sxm").device_memory_bytes).frontend_s == 0.0  # no fit: no front end
