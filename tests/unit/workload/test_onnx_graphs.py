"""ONNX graphs: shape inference at a batch, lowering to cost-layer ops, and predict on them."""

import math

import onnx
import pytest
from onnx import TensorProto, helper

from tokenfab import api
from tokenfab.errors import DataFileError, InvalidInputError, UnknownNameError
from tokenfab.workload.onnx_graph import load_graph
from tokenfab.workload.onnx_zoo import resnet50

pytestmark = pytest.mark.unit


def test_bundled_graphs_have_the_published_parameter_counts():
    # torchvision resnet50: 25,557,032 parameters; BERT-Large encoder + SQuAD head (no pooler): 334.09 M
    assert load_graph("resnet-50", 1).weight_elements == 25_557_032
    assert load_graph("bert-large", 1).weight_elements == pytest.approx(334.09e6, rel=1e-3)


def test_conv_is_an_implicit_gemm_with_the_batch_in_m():
    first = load_graph("resnet-50", 4).ops[0]  # 7x7/2 conv, 3 -> 64 channels, 224 -> 112
    assert (first.kind, first.m, first.n, first.k) == ("conv", 4 * 112 * 112, 64, 3 * 7 * 7)
    assert first.io_elements == 4 * 3 * 224 * 224 + 4 * 64 * 112 * 112
    ops = load_graph("resnet-50", 4).ops
    # BatchNorm, Relu and the residual Add fold into the conv epilogues: 53 convs, 1 FC, 2 pools
    assert sorted({o.op_type for o in ops}) == ["Conv", "Gemm", "GlobalAveragePool", "MaxPool"]
    assert sum(o.op_type == "Conv" for o in ops) == 53
    macs = sum(o.m * o.n * o.k * o.groups for o in ops if o.kind in ("conv", "gemm")) / 4
    assert macs == pytest.approx(4.09e9, rel=0.02)  # ResNet-50 v1.5: ~4.1 GMACs per image


def test_bert_attention_maps_to_batched_gemms():
    g = load_graph("bert-large", 2)
    scores = [o for o in g.ops if o.kind == "batched_gemm"]
    assert len(scores) == 48
    assert (scores[0].groups, scores[0].m, scores[0].n, scores[0].k) == (2 * 16, 384, 384, 64)
    assert {o.op_type for o in g.ops if o.kind == "elementwise"} >= {"Softmax", "LayerNormalization"}


def test_throughput_scales_with_replicas_and_int8_beats_fp16():
    one = api.predict(model="resnet-50", hardware="h100-sxm", batch=64, dtype="int8").to_dict()
    eight = api.predict(model="resnet-50", hardware="h100-sxm", batch=64, dp=8, dtype="int8").to_dict()
    assert eight["throughput_samples_per_s"] == pytest.approx(8 * one["throughput_samples_per_s"])
    assert one["throughput_samples_per_s"] == pytest.approx(64 / one["latency_s"])
    fp16 = api.predict(model="resnet-50", hardware="h100-sxm", batch=64, dtype="fp16").to_dict()
    assert fp16["latency_s"] > one["latency_s"]
    assert fp16["memory_bytes"]["weights"] == 2 * one["memory_bytes"]["weights"]


def test_sram_chip_shows_the_working_set_on_chip():
    small = api.predict(model="resnet-50", hardware="hanguang-800", batch=8, dtype="int8").to_dict()
    assert small["resident_on_chip"] and small["fits"] and small["memory_bytes"]["onchip_sram"] == 192e6
    big = api.predict(model="resnet-50", hardware="hanguang-800", batch=256, dtype="int8").to_dict()
    assert not big["fits"] and not big["resident_on_chip"]  # 256 images of activations exceed 192 MB
    bert = api.predict(model="bert-large", hardware="hanguang-800", batch=1, dtype="int8").to_dict()
    assert not bert["fits"]  # 334 MB of INT8 weights do not fit in 192 MB of SRAM
    gpu = api.predict(model="resnet-50", hardware="h100-sxm", batch=1, dtype="int8").to_dict()
    assert gpu["resident_on_chip"]  # 25.6 MB of INT8 weights fit in the 50 MB L2


def test_an_onnx_file_with_a_symbolic_batch(tmp_path):
    path = tmp_path / "resnet.onnx"
    onnx.save(resnet50(), path)
    from_file = api.predict(model=str(path), hardware="l4", batch=2, dtype="int8").to_dict()
    bundled = api.predict(model="resnet-50", hardware="l4", batch=2, dtype="int8").to_dict()
    assert from_file["latency_s"] == pytest.approx(bundled["latency_s"])
    # an unknown op is costed as memory-bound and named
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])
    model = helper.make_model(helper.make_graph([helper.make_node("Softplus", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 20)])
    onnx.save(model, tmp_path / "odd.onnx")
    d = api.predict(model=str(tmp_path / "odd.onnx"), hardware="l4", batch=16, dtype="fp16").to_dict()
    assert d["costed_as_elementwise"] == ["Softplus"] and d["breakdown"][0]["bytes"] == 2 * 16 * 64 * 2


def test_bad_onnx_input(tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        api.predict(model=str(tmp_path / "missing.onnx"), hardware="l4")
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(DataFileError, match="cannot read ONNX"):
        api.predict(model=str(tmp_path / "bad.onnx"), hardware="l4")
    fixed = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [fixed], [out])),
              tmp_path / "fixed.onnx")
    with pytest.raises(InvalidInputError, match="symbolic batch"):
        api.predict(model=str(tmp_path / "fixed.onnx"), hardware="l4")
    with pytest.raises(InvalidInputError, match="--dp"):
        api.predict(model="resnet-50", hardware="h100-sxm", tp=2)
    with pytest.raises(InvalidInputError, match="int8"):
        api.predict(model="resnet-50", hardware="hanguang-800", dtype="bf16")
    with pytest.raises(UnknownNameError):
        load_graph("resnet-5", 1)
    assert math.isfinite(api.predict(model="bert-large", hardware="l4", batch=1, dtype="int8").latency_s)


@pytest.mark.unit
def test_bundled_names_match_the_zoo():
    """`is_graph` answers from a list of names (no onnx import); it must name exactly the zoo's graphs."""
    from tokenfab.workload.onnx_graph import graph_names, is_graph
    from tokenfab.workload.onnx_zoo import BUNDLED

    assert graph_names() == sorted(BUNDLED)
    assert all(is_graph(name) for name in BUNDLED) and not is_graph("llama-3.1-8b")
