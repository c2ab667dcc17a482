"""Two-batch overlap (execution.overlap): the pipeline's critical path by hand, the micro-batch split, validation."""

from __future__ import annotations

import json

import pytest
from testkit import run_cli

from tokenfab import api
from tokenfab.errors import ParallelismError
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.overlap import LayerStages, layer_stages, split_two, tbo_makespan

pytestmark = pytest.mark.unit


def test_comm_bound_layer_by_hand():
    """pre 1, dispatch 2, experts 1, combine 2, post 0.5 per micro-batch (seconds). Compute stream: A.pre [0,1],
    B.pre [1,2], A.experts waits for A's dispatch [1,3] -> [3,4], B.experts waits for B's dispatch [3,5] -> [5,6],
    A.post [6,6.5], B.post [7,7.5] (after A's combine [5,7]); B's combine [7,9] ends the layer: 9 s, the
    communication total (8) plus A.pre, against 13 s run back to back."""
    s = LayerStages(1.0, 2.0, 1.0, 2.0, 0.5)
    assert tbo_makespan([(s, s)]) == pytest.approx(9.0)


def test_compute_bound_layer_by_hand():
    """pre 3, dispatch 1, experts 3, combine 1: compute runs 12 s without a gap (A.pre, B.pre, A.experts from 6 to 9,
    B.experts from 9 to 12), and B's combine [12,13] is the one exchange left exposed: 13 s (16 s back to back)."""
    s = LayerStages(3.0, 1.0, 3.0, 1.0, 0.0)
    assert tbo_makespan([(s, s)]) == pytest.approx(13.0)


def test_layers_chain_across_the_boundary():
    """Two comm-bound layers: the second layer's A.pre runs under B's first-layer combine, so two layers take
    less than twice one (9 s): A's combine ends at 7, A.post at 6.5 -> A.pre' [7,8], dispatch A' waits for B's
    combine [7,9] -> [9,11], B.post [8,8.5], B.pre' [9,10] (after B's combine), dispatch B' [11,13], A.exp' [11,12],
    combine A' [13,15], B.exp' [13,14], combine B' [15,17]: 17 s."""
    s = LayerStages(1.0, 2.0, 1.0, 2.0, 0.5)
    assert tbo_makespan([(s, s), (s, s)]) == pytest.approx(17.0)


def test_split_halves_decodes_and_balances_prefill_tokens():
    a, b = split_two(StepBatch(num_decode=7, decode_kv_len=100.0))
    assert (a.num_decode, b.num_decode) == (4, 3)
    a, b = split_two(StepBatch(prefill=((3, 1000, 1000), (1, 3000, 3000))))
    assert (a.prefill_tokens, b.prefill_tokens) == (3000, 3000)
    a, b = split_two(StepBatch(prefill=((1, 2001, 2001),)))  # one prompt: split at its middle token
    assert a.prefill == ((1, 1001, 1001),) and b.prefill == ((1, 1000, 2001),)
    assert split_two(StepBatch(num_decode=1, decode_kv_len=10.0)) is None


def test_layer_stages_sorts_by_exchange():
    d = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=1, dp=4, ep=4)
    sm = d.step_model
    group = sm.model.layers[0]
    ops = list(sm.coster.layer_ops(group, StepBatch(prefill=((2, 512, 512),)), with_core=True))
    st = layer_stages(ops)
    by_op = {}
    for cost in ops:
        by_op[cost.op] = by_op.get(cost.op, 0.0) + cost.time_s
    assert st.dispatch_s == pytest.approx(by_op["moe.dispatch"]) and st.combine_s == pytest.approx(by_op["moe.combine"])
    assert st.experts_s == pytest.approx(by_op["moe.experts"])
    assert st.compute_s + st.comm_s == pytest.approx(sum(by_op.values()))


def test_step_is_the_pipeline_of_the_halves():
    """The TBO step = critical path of the halves' layer stages + embedding + LM head of the whole batch."""
    sm = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=1, dp=4, ep=4, two_batch_overlap=True).step_model
    batch = StepBatch(prefill=((4, 1024, 1024),))
    res = sm.step(batch)
    halves = split_two(batch)
    layers = []
    for group, count in sm._group_counts:
        layers += [tuple(layer_stages(sm.coster.layer_ops(group, h, with_core=True)) for h in halves)] * round(count)
    embed, head = res.parts[-2].time_s, res.parts[-1].time_s
    assert res.time_s == pytest.approx(tbo_makespan(layers) + embed + head, rel=1e-12)
    plain = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=1, dp=4, ep=4).step_model
    assert sm.time_energy(batch) == (res.time_s, res.energy_j)
    assert sm.fast_step(batch.prefill, 0, 0.0) == (res.time_s, res.energy_j)
    assert res.time_s != plain.step(batch).time_s


def test_overlap_needs_expert_parallelism():
    with pytest.raises(ParallelismError, match="--two-batch-overlap needs expert parallelism: got --ep 1"):
        api.deployment("qwen3-30b-a3b", "h100-sxm", tp=1, dp=4, ep=1, two_batch_overlap=True)
    with pytest.raises(ParallelismError, match="--pp"):
        api.deployment("qwen3-30b-a3b", "h100-sxm", tp=1, pp=2, dp=2, ep=2, two_batch_overlap=True)


def test_cli_rejects_overlap_without_ep(capsys):
    code, _out, err = run_cli(["predict", "--model", "qwen3-30b-a3b", "--hardware", "h100-sxm", "--tp", "2",
                               "--two-batch-overlap", "--json"], capsys)
    assert code == 2
    assert err.startswith("error: --two-batch-overlap needs expert parallelism") and err.strip().count("\n") == 0


def test_cli_predict_and_simulate_take_overlap(capsys):
    base = ["--model", "qwen3-30b-a3b", "--hardware", "h100-sxm", "--tp", "1", "--dp", "4", "--ep", "4"]
    pred = ["predict", *base, "--batch", "8", "--input-len", "1024", "--output-len", "8", "--json"]
    code_on, on, _ = run_cli([*pred, "--two-batch-overlap"], capsys)
    code_off, off, _ = run_cli(pred, capsys)
    assert code_on == 0 and code_off == 0
    assert json.loads(on)["ttft_s"] != json.loads(off)["ttft_s"]
    code, out, err = run_cli(["simulate", *base, "--offline", "--num-requests", "16", "--input-len", "512",
                              "--output-len", "4", "--two-batch-overlap", "--json"], capsys)
    assert code == 0, err
