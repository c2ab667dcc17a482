"""SGLang's prompt-only iterations: their own host time (eager extend batches), fitted per model class."""

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


def _one_request(prefill_overhead_s: float) -> tuple[float, float]:
    """(TTFT, E2E) of one 64-token prompt with 4 output tokens on a prefill-first engine, 10 ms per step."""
    policy = engine_spec("sglang", B200_BYTES).model_copy(update={"prefill_overhead_s": prefill_overhead_s,
                                                                    "step_overhead_s": 0.0, "cuda_graph_sizes": ()})
    spec = ReplicaSpec(step=FixedTimer(0.010), kv_blocks=10_000, max_num_seqs=8, prefix_caching=False, policy=policy)
    wl = WorkloadSpec(arrival="offline", num_requests=1, input=LengthDist(value=64), output=LengthDist(value=4))
    log = Simulation([spec], wl, seed=0).run().log
    return float(log.column("first_token_s")[0] - log.column("arrival_s")[0]), float(log.column("finish_s")[0])


def test_prefill_overhead_lengthens_only_the_prompt_iteration():
    # Hand count: the prompt runs in an iteration of its own (10 ms + overhead) and yields token 1; tokens 2..4 are
    # three decode iterations of 10 ms each, which the overhead must not touch.
    ttft0, e2e0 = _one_request(0.0)
    ttft1, e2e1 = _one_request(0.050)
    assert ttft0 == pytest.approx(0.010)
    assert ttft1 == pytest.approx(0.060)
    assert e2e1 - e2e0 == pytest.approx(0.050)


def test_architecture_keys_of_bundled_models():
    assert architecture_key(load_model("deepseek-v3")) == "mla-moe"
    assert architecture_key(load_model("qwen3-235b-a22b")) == "moe"
    assert architecture_key(load_model("llama-3.1-8b")) == "dense"


def test_for_model_applies_the_fit_of_the_model_class_only(monkeypatch):
    monkeypatch.setattr(engines, "fitted_overheads",
                        lambda: {"sglang": {"architectures": {"mla-moe": {"prefill_overhead_s": 0.07}}}})
    eng = engine_spec("sglang", B200_BYTES)
    assert for_model(eng, load_model("deepseek-v3")).prefill_overhead_s == pytest.approx(0.07)
    assert for_model(eng, load_model("llama-3.1-8b")) is eng  # dense SGLang keeps its defaults
    trt = engine_spec("trtllm", B200_BYTES)
    assert for_model(trt, load_model("deepseek-v3")) is trt


def test_stored_fit_has_provenance():
    import yaml

    data = yaml.safe_load(engines.OVERHEADS_PATH.read_text())  # the one file of fitted host times
    prov = data["provenance"]["prefill"]
    assert {"method", "split", "commit", "command", "held_out_before", "held_out_after"} <= set(prov)
    assert "fit_sglang_prefill.py" in prov["command"]
    stored = data["engines"]["sglang"]["architectures"]["mla-moe"]["prefill_overhead_s"]
    assert 0.0 <= stored < 1.0
    # what the reader gives an MLA + MoE model under SGLang is the stored value
    eng = for_model(engine_spec("sglang", B200_BYTES), load_model("deepseek-v3"))
    assert eng.prefill_overhead_s == stored
