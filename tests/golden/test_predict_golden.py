"""Frozen predictions: any change to them must be deliberate (rerun with --update-golden and review the diff)."""

from pathlib import Path

import pytest

from testkit import check_golden

from tokenfab import api

pytestmark = pytest.mark.golden

GOLDEN = Path(__file__).with_name("predict_golden.json")
CASES = {
    "llama-3.1-8b/h100-sxm/b1": dict(model="llama-3.1-8b", hardware="h100-sxm", batch=1, input_len=1024, output_len=128),
    "llama-3.1-70b/h100-sxm/tp8-b32": dict(model="llama-3.1-70b", hardware="h100-sxm", tp=8, batch=32, input_len=2048, output_len=256),
    "qwen3-30b-a3b/h20/b16": dict(model="qwen3-30b-a3b", hardware="h20", batch=16, input_len=1024, output_len=256),
    "deepseek-v3/h200-sxm/tp8-ep8-fp8": dict(model="deepseek-v3", hardware="h200-sxm", tp=8, ep=8, dtype="fp8", batch=16, input_len=1024, output_len=256),
    "llama-3.1-8b/ascend-910b/fp16": dict(model="llama-3.1-8b", hardware="ascend-910b", dtype="fp16", batch=8, input_len=512, output_len=128),
    "qwen3-32b/npu-template/int4": dict(model="qwen3-32b", hardware="npu-template", weight_dtype="int4", batch=8, input_len=512, output_len=128),
}
FIELDS = ("ttft_s", "tpot_s", "e2e_s", "throughput_tokens_per_s", "energy_j_per_token", "max_batch_that_fits")


def _current() -> dict:
    out = {}
    for key, kwargs in CASES.items():
        d = api.predict(**kwargs).to_dict()
        out[key] = {f: d[f] for f in FIELDS} | {"total_per_device": d["memory_bytes"]["total_per_device"]}
    return out


def test_predictions_match_golden(update_golden):
    check_golden(GOLDEN, _current(), update_golden)
