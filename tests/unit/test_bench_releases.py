"""Which engine release bench/accuracy_serving.py passes for a row's framework column: the TensorRT-LLM releases of the
aiconfigurator rows (for fits stored per release), not the ai-dynamo container's version."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from accuracy_serving import engine_release, trtllm_release  # noqa: E402

pytestmark = pytest.mark.unit


def test_trtllm_releases_are_passed_and_dynamo_containers_are_not():
    assert trtllm_release("trtllm 1.0.0rc3") == {"engine_version": "1.0.0rc3"}
    assert trtllm_release("trtllm 1.2.0rc6.post2") == {"engine_version": "1.2.0rc6.post2"}
    assert trtllm_release("trtllm 0.8.1.post2") == {}  # ai-dynamo's container version, not a TensorRT-LLM release
    assert trtllm_release("trtllm nan") == {} and trtllm_release("vllm 0.12.0") == {}
    assert engine_release("trtllm 1.0.0rc3") == {}  # the shared helper (MoE rows too) leaves them as before
