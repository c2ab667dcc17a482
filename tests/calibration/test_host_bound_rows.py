"""The evidence behind calibrate/host_bound.yaml, checked on the shared data: the L40S host measured in ops_comm.csv
cannot have produced the published TensorRT-LLM v0.14.0 L40S throughput, the chip's pair measurement can."""

import pandas as pd
import pytest

from tokenfab import api
from tokenfab.calibrate.measurements import load_shared_ops, shared_calibration_dir

pytestmark = pytest.mark.calibration

LAYERS, HIDDEN, BATCH = 80, 8192, 512  # Llama-3.1-70B; a batch of 512 tokens: 8 MiB bf16 all-reduce messages
MESSAGE_BYTES = BATCH * HIDDEN * 2


def _published(tp: int) -> float:
    rows = pd.read_csv(shared_calibration_dir() / "trtllm.csv")
    return float(rows[rows.case_id == f"trtllm-v0.14.0-L40S-FP8-Llama-3.1-70B-tp{tp}-128-2048"].value.iloc[0])


def _all_reduce_cap(time_s: float) -> float:
    """Output tokens/s that two all-reduces per layer alone allow, with no compute at all."""
    return BATCH / (2 * LAYERS * time_s)


@pytest.mark.parametrize("tp", [4, 8])
def test_measured_host_cannot_reach_the_published_rows(tp):
    ops = load_shared_ops()
    rows = ops[(ops.device == "l40s") & (ops.op == "all_reduce") & (ops.num_devices == tp)
               & (ops.message_bytes == MESSAGE_BYTES) & (ops.dtype == "half")]
    assert len(rows) == 1
    assert _all_reduce_cap(float(rows.time_s.iloc[0])) < 0.8 * _published(tp)


@pytest.mark.parametrize("tp", [4, 8])
def test_pair_fit_leaves_room_for_the_published_rows(tp):
    predicted = api.op("allreduce", "l40s", devices=tp, bytes=MESSAGE_BYTES).cost.time_s
    assert _all_reduce_cap(predicted) > 1.5 * _published(tp)
