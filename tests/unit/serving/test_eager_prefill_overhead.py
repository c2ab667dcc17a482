"""Iterations carrying prompt work run eagerly, outside the engines' CUDA graphs: their host time, per layer and model
class (SGLang's prompt-only iterations, TensorRT-LLM's iterations with a context request)."""

import pytest
from test_simulator import FixedTimer  # the simulator tests' stub step model

from tokenfab.serving import engines
from tokenfab.serving.engines import architecture_key, engine_spec, for_model
from tokenfab.serving.replica import ReplicaSpec
from tokenfab.serving.simulator import Simulation
from tokenfab.serving.workload import LengthDist, WorkloadSpec
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.unit

B200_BYTES = 178.35 * 2**30


def _one_request(engine: str, prefill_overhead_s: float, overlaps: bool = False, idle_power_w: float = 0.0):
    """(TTFT, E2E) of one 64-token prompt with 4 output tokens, 10 ms per step, no other host time (and, with
    `idle_power_w`, the run's energy too)."""
    policy = engine_spec(engine, B200_BYTES).model_copy(update={
        "prefill_overhead_s": prefill_overhead_s, "prefill_overhead_overlaps": overlaps, "step_overhead_s": 0.0,
        "cuda_graph_sizes": (), "frontend_s": 0.0})
    spec = ReplicaSpec(step=FixedTimer(0.010), kv_blocks=10_000, max_num_seqs=8, prefix_caching=False, policy=policy,
                       idle_power_w=idle_power_w)
    wl = WorkloadSpec(arrival="offline", num_requests=1, input=LengthDist(value=64), output=LengthDist(value=4))
    result = Simulation([spec], wl, seed=0).run()
    log = result.log
    times = float(log.column("first_token_s")[0] - log.column("arrival_s")[0]), float(log.column("finish_s")[0])
    return (*times, result.summary["energy_j"]) if idle_power_w else times


@pytest.mark.parametrize("engine", ["sglang", "trtllm"])
def test_the_host_time_draws_the_idle_power(engine):
    # The stub's kernels draw nothing; 50 ms of eager host time at 100 W idle adds 5 J, whether the prompt's iteration
    # is prompt-only (SGLang) or mixed (TensorRT-LLM), as the capacity steady state charges it (`serving.eager`).
    e0 = _one_request(engine, 0.0, idle_power_w=100.0)[2]
    e1 = _one_request(engine, 0.050, idle_power_w=100.0)[2]
    assert e1 - e0 == pytest.approx(5.0)


@pytest.mark.parametrize("engine", ["sglang", "trtllm"])
def test_the_host_time_lengthens_only_the_prompt_iteration(engine):
    # Hand count: the prompt's iteration (10 ms + 50 ms of host time) yields token 1 (SGLang: an iteration of its own;
    # TensorRT-LLM: an iteration with one context request); tokens 2..4 are three decode iterations of 10 ms, replayed
    # as graphs, which the host time must not touch.
    ttft0, e2e0 = _one_request(engine, 0.0)
    ttft1, e2e1 = _one_request(engine, 0.050)
    assert ttft0 == pytest.approx(0.010)
    assert ttft1 == pytest.approx(0.060)
    assert e2e1 - e2e0 == pytest.approx(0.050)


def test_overlapping_host_time_takes_the_longer_of_host_and_kernels():
    # 50 ms of launches beside 10 ms of kernels: the iteration takes 50 ms; 4 ms beside 10 ms: the kernels' 10 ms.
    assert _one_request("trtllm", 0.050, overlaps=True)[0] == pytest.approx(0.050)
    assert _one_request("trtllm", 0.004, overlaps=True)[0] == pytest.approx(0.010)


def test_architecture_keys_of_bundled_models():
    assert architecture_key(load_model("deepseek-v3")) == "mla-moe"
    assert architecture_key(load_model("qwen3-235b-a22b")) == "moe"
    assert architecture_key(load_model("llama-3.1-8b")) == "dense"


def test_for_model_scales_the_per_layer_fit_of_the_model_class_by_its_layers(monkeypatch):
    monkeypatch.setattr(engines, "fitted_prefill_overheads", lambda: {"trtllm": {"moe": 0.001}, "sglang": {"mla-moe": 0.002}})
    monkeypatch.setattr(engines, "fitted_prefill_overlaps", lambda: {"trtllm": True})
    trt, sgl = engine_spec("trtllm", B200_BYTES), engine_spec("sglang", B200_BYTES)
    qwen = for_model(trt, load_model("qwen3-235b-a22b"))  # 94 decoder layers
    assert qwen.prefill_overhead_s == pytest.approx(0.094) and qwen.prefill_overhead_overlaps
    deepseek = for_model(sgl, load_model("deepseek-v3"))  # 61 decoder layers
    assert deepseek.prefill_overhead_s == pytest.approx(0.122) and not deepseek.prefill_overhead_overlaps
    assert for_model(trt, load_model("llama-3.1-8b")) is trt  # dense models keep the engines' defaults
    assert for_model(trt, load_model("deepseek-v3")) is trt  # no fit for the class


def test_stored_fit_has_provenance():
    path = engines.PREFILL_OVERHEADS_PATH
    if not path.exists():
        pytest.skip("no fitted prefill overheads (bench/fit_moe_prefill.py --write)")
    import yaml

    data = yaml.safe_load(path.read_text())
    assert {"method", "why", "split", "fits"} <= set(data["provenance"])
    assert set(data["provenance"]["fits"]) == set(data["engines"])
    for fit in data["provenance"]["fits"].values():
        assert {"held_out_before", "held_out_after", "fit_half_score", "commit", "command"} <= set(fit)
    for engine in data["engines"].values():
        assert isinstance(engine["overlaps_kernels"], bool)
        for row in engine["classes"].values():
            assert 0.0 <= row["prefill_overhead_s_per_layer"] < 0.01


def test_the_trtllm_engine_runtime_launches_no_kernels_from_python(monkeypatch):
    monkeypatch.setattr(engines, "fitted_prefill_overheads", lambda: {"trtllm": {"moe": 0.001}})
    v0 = engine_spec("trtllm", B200_BYTES, version="0.14")
    assert not v0.eager_prompt_iterations
    assert for_model(v0, load_model("mixtral-8x7b")) is v0
    assert for_model(engine_spec("trtllm", B200_BYTES, version="1.0"), load_model("mixtral-8x7b")).prefill_overhead_s \
        == pytest.approx(0.032)  # 32 decoder layers
