"""TensorRT-LLM's explicit CUDA-graph capture list (cuda_graph_config.batch_sizes, as trtllm-bench's
--extra_llm_api_options give it) against the list CudaGraphConfig generates from max_batch_size; the engine captures
the listed sizes not above max_batch_size and max_num_tokens (_torch/pyexecutor/model_engine.py)."""

from __future__ import annotations

import pytest

from tokenfab import api
from tokenfab.cli.simulate_cmds import _batch_sizes
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.catalog import load_chip
from tokenfab.serving.engines import engine_spec
from tokenfab.serving.engines.trtllm import captured_sizes

pytestmark = pytest.mark.unit
H100 = load_chip("h100-sxm").device_memory_bytes
OVERVIEW = (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192)


def test_listed_sizes_replace_the_generated_ones():
    """max_batch_size 384: the generated list has no 256 (powers of two stop below 2^floor(log2 384) = 256), so a batch
    of 250 pads to 384; the perf overview's list pads it to 256 and a batch of 300 to 384."""
    generated = engine_spec("trtllm", H100, 1, cuda_graph_max_batch=384)
    listed = engine_spec("trtllm", H100, 1, cuda_graph_batch_sizes=captured_sizes(OVERVIEW, 384, 2048))
    assert generated.padded_decode(250) == 384
    assert listed.padded_decode(250) == 256 and listed.padded_decode(300) == 384 and listed.padded_decode(12) == 16


def test_engine_keeps_sizes_within_its_limits():
    assert captured_sizes(OVERVIEW, 640, 2048) == (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512)
    assert captured_sizes(OVERVIEW, 4096, 2304)[-1] == 2048  # max_num_tokens bounds the list as well
    listed = engine_spec("trtllm", H100, 1, cuda_graph_batch_sizes=captured_sizes(OVERVIEW, 640, 2048))
    assert listed.padded_decode(600) == 600  # above the largest captured size: no graph, no padding


def test_an_empty_list_is_no_cuda_graphs():
    spec = engine_spec("trtllm", H100, 1, "0.14.0", cuda_graph_batch_sizes=())
    assert spec.cuda_graph_sizes == () and spec.padded_decode(37) == 37


def test_other_engines_refuse_a_capture_list():
    with pytest.raises(InvalidInputError, match="capture list can be chosen for: trtllm"):
        engine_spec("vllm", H100, 1, cuda_graph_batch_sizes=(1, 2))


def test_simulate_pads_to_the_listed_sizes():
    """250 requests decoding together under max_num_seqs 384: padded to 384 by the generated list, to 256 by the listed
    one, so the listed run is faster; sizes above max_num_seqs are dropped, not refused."""
    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", engine="trtllm", offline=True, num_requests=250, input_len=16,
              output_len=64, max_num_seqs=384)
    generated = api.simulate(cuda_graph_max_batch=384, **kw).summary["throughput_tokens_per_s"]
    listed = api.simulate(cuda_graph_batch_sizes=OVERVIEW, **kw).summary["throughput_tokens_per_s"]
    assert listed > 1.05 * generated
    with pytest.raises(InvalidInputError, match="batch sizes >= 1"):
        api.simulate(cuda_graph_batch_sizes=(0, 8), **kw)


def test_cli_parses_the_list():
    assert _batch_sizes("1, 2,4,") == (1, 2, 4)
    assert _batch_sizes("none") == () and _batch_sizes(None) is None
    with pytest.raises(InvalidInputError, match="comma-separated integers"):
        _batch_sizes("1,two")
