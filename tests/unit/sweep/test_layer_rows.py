"""`sweep.layer_rows`: a layer part's kernel rows at many token counts at once are the step model's own rows."""

from __future__ import annotations

import numpy as np
import pytest

from tokenfab.hardware.catalog import load_chip
from tokenfab.sweep import layer_rows
from tokenfab.sweep.fast import _tp_setup
from tokenfab.sweep.layer_rows import LayerRows
from tokenfab.sweep.retime import _COL, GEMM, _Points
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.unit

TOKENS = (3, 64, 255, 256, 257, 1025, 3000, 9001)  # none of them a probe count


@pytest.mark.parametrize("model_name, tp", [("llama-3.1-8b", 1), ("llama-3.1-8b", 4), ("qwen3-8b", 2)])
def test_rows_at_many_token_counts_are_the_step_models_own(model_name, tp):
    sm, kernels, _ = _tp_setup(_Points([load_chip("h100-sxm")]), load_model(model_name), tp)
    rows = sm.layer_rows
    assert isinstance(rows, LayerRows)  # dense layers take the vectorised rows
    for graphed in (False, True):
        many, counts = rows.rows(np.array(TOKENS), graphed, with_traffic=True)
        for t, mine in zip(TOKENS, many):
            own, own_counts, _ = rows._scalar(t, graphed)
            assert np.array_equal(mine, own) and np.array_equal(counts, own_counts), (t, graphed)
        plain, _ = rows.rows(np.array(TOKENS), graphed)  # without traffic only a GEMM's DRAM column differs (NaN)
        gemm = many[0][:, _COL["kind"]] == GEMM
        assert np.isnan(plain[:, gemm, _COL["dram"]]).all()
        assert np.array_equal(np.delete(plain[:, gemm], _COL["dram"], axis=2), np.delete(many[:, gemm], _COL["dram"], axis=2))
        assert np.array_equal(plain[:, ~gemm], many[:, ~gemm])


def test_moe_layers_keep_the_step_model():
    sm, _, _ = _tp_setup(_Points([load_chip("h100-sxm")]), load_model("qwen3-30b-a3b"), 1)
    assert sm.layer_rows is None


def test_rows_that_differ_from_the_step_model_are_not_used(monkeypatch):
    """A formula that is not the step model's (here the activation's bytes off by one) is caught at the probes and
    the layer parts go through the step model."""
    real = layer_rows._recipe

    def off_by_one(sm):
        return [(name, (lambda t, f=f: f(t) + 1.0) if name == "mlp.act" else f) for name, f in real(sm)]

    monkeypatch.setattr(layer_rows, "_recipe", off_by_one)
    sm, _, _ = _tp_setup(_Points([load_chip("h100-sxm")]), load_model("llama-3.1-8b"), 1)
    assert sm.layer_rows is None


@pytest.mark.parametrize("model_name", ["llama-3.1-8b", "qwen3-30b-a3b"])
def test_recorded_attention_cores_are_the_step_models(model_name):
    """The recording step model costs each prefill group's attention core once per shape: its core parts are
    still `StepModel._core_part`'s, value for value, and repeated shapes hand back the very same operators."""
    from tokenfab.execution.layers import StepBatch
    from tokenfab.execution.step import StepModel

    sm, _, _ = _tp_setup(_Points([load_chip("h100-sxm")]), load_model(model_name), 2)
    assert sm._split_cores
    batches = [StepBatch(((3, 1024, 1024),), 17, 1100.0), StepBatch(((1, 512, 2048), (2, 1024, 1024)), 0, 0.0),
               StepBatch((), 40, 900.0), StepBatch(((3, 1024, 1024),), 18, 1100.0), StepBatch(((1, 8, 4000),), 5, 300.0)]
    for batch in batches:
        assert sm._core_part(batch) == StepModel._core_part(sm, batch)
    first = sm.part_pairs[id(sm._core_part(batches[0]))][1]
    again = sm.part_pairs[id(sm._core_part(batches[3]))][1]
    assert first[0][0] is again[0][0] and first[-1][0] is not again[-1][0]  # same prefill core, new decode core
