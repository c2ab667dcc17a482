"""Graph-only ONNX models built in code: ResNet-50 v1.5 and BERT-Large (SQuAD head), the two
non-LLM MLPerf Inference workloads the calibration data measures.

Nothing is downloaded and no weights exist: every weight is a graph input with a static shape
(structure without values), the batch dimension is symbolic ('batch'). The layer shapes follow
the reference definitions: ResNet-50 v1.5 as in torchvision `resnet50` (stride 2 in the 3x3 conv
of each bottleneck, https://github.com/pytorch/vision/blob/main/torchvision/models/resnet.py;
25,557,032 parameters), BERT-Large as in Devlin et al. 2019 (24 layers, hidden 1024, 16 heads,
FFN 4096, vocabulary 30522, 512 positions; the MLPerf SQuAD v1.1 model at sequence length 384).
`python -m tokenfab.workload.onnx_zoo DIR` writes them as .onnx files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import onnx
from onnx import TensorProto, helper

OPSET = 20  # Gelu and LayerNormalization are standard ops here
BATCH = "batch"


class _Builder:
    """Collects nodes and shape-only weight inputs, naming tensors uniquely."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.ValueInfoProto] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def weight(self, prefix: str, shape: list[int]) -> str:
        name = self._name(prefix)
        self.weights.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def const(self, values: list[int]) -> str:
        out = self._name("shape")
        tensor = helper.make_tensor(out, TensorProto.INT64, [len(values)], values)
        self.nodes.append(helper.make_node("Constant", [], [out], name=out, value=tensor))
        return out

    def model(self, name: str, inputs: list[onnx.ValueInfoProto], output: str, out_shape: list) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs + self.weights,
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tokenfab")


def _conv_bn(b: _Builder, x: str, c_in: int, c_out: int, kernel: int, stride: int, relu: bool = True) -> str:
    w = b.weight("conv_w", [c_out, c_in, kernel, kernel])
    pad = kernel // 2
    y = b.op("Conv", [x, w], kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
    bn = [b.weight("bn_scale", [c_out]), b.weight("bn_bias", [c_out]), b.weight("bn_mean", [c_out]), b.weight("bn_var", [c_out])]
    y = b.op("BatchNormalization", [y, *bn])
    return b.op("Relu", [y]) if relu else y


def resnet50() -> onnx.ModelProto:
    """ResNet-50 v1.5, NCHW float input [batch, 3, 224, 224], 1000 logits."""
    b = _Builder()
    x = _conv_bn(b, "input", 3, 64, 7, 2)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            s = stride if i == 0 else 1
            y = _conv_bn(b, x, c_in, width, 1, 1)
            y = _conv_bn(b, y, width, width, 3, s)
            y = _conv_bn(b, y, width, width * 4, 1, 1, relu=False)
            short = _conv_bn(b, x, c_in, width * 4, 1, s, relu=False) if i == 0 else x
            x = b.op("Relu", [b.op("Add", [y, short])])
            c_in = width * 4
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    logits = b.op("Gemm", [x, b.weight("fc_w", [1000, 2048]), b.weight("fc_b", [1000])], transB=1)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [BATCH, 3, 224, 224])
    return b.model("resnet-50", [inp], logits, [BATCH, 1000])


def _linear(b: _Builder, x: str, d_in: int, d_out: int) -> str:
    return b.op("Add", [b.op("MatMul", [x, b.weight("w", [d_in, d_out])]), b.weight("b", [d_out])])


def _layer_norm(b: _Builder, x: str, d: int) -> str:
    return b.op("LayerNormalization", [x, b.weight("ln_g", [d]), b.weight("ln_b", [d])], axis=-1)


def _bert_layer(b: _Builder, x: str, seq: int, d: int, heads: int, ffn: int) -> str:
    hd = d // heads
    split = b.const([0, seq, heads, hd])

    def heads_of(t: str, perm: list[int]) -> str:
        return b.op("Transpose", [b.op("Reshape", [t, split])], perm=perm)

    q = heads_of(_linear(b, x, d, d), [0, 2, 1, 3])
    k = heads_of(_linear(b, x, d, d), [0, 2, 3, 1])
    v = heads_of(_linear(b, x, d, d), [0, 2, 1, 3])
    scores = b.op("Div", [b.op("MatMul", [q, k]), b.weight("scale", [1])])
    ctx = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
    ctx = b.op("Reshape", [b.op("Transpose", [ctx], perm=[0, 2, 1, 3]), b.const([0, seq, d])])
    x = _layer_norm(b, b.op("Add", [_linear(b, ctx, d, d), x]), d)
    h = b.op("Gelu", [_linear(b, x, d, ffn)])
    return _layer_norm(b, b.op("Add", [_linear(b, h, ffn, d), x]), d)


def bert_large(seq_len: int = 384) -> onnx.ModelProto:
    """BERT-Large encoder with the SQuAD span head: int64 token ids [batch, seq_len] -> [batch, seq_len, 2]."""
    b = _Builder()
    d, heads, ffn, vocab = 1024, 16, 4096, 30522
    words = b.op("Gather", [b.weight("word_emb", [vocab, d]), "input_ids"])
    pos = b.op("Gather", [b.weight("pos_emb", [512, d]), "position_ids"])
    typ = b.op("Gather", [b.weight("type_emb", [2, d]), "token_type_ids"])
    x = _layer_norm(b, b.op("Add", [b.op("Add", [words, pos]), typ]), d)
    for _ in range(24):
        x = _bert_layer(b, x, seq_len, d, heads, ffn)
    logits = _linear(b, x, d, 2)
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, [BATCH, seq_len])
           for n in ("input_ids", "position_ids", "token_type_ids")]
    return b.model("bert-large", ids, logits, [BATCH, seq_len, 2])


BUNDLED: dict[str, Callable[[], onnx.ModelProto]] = {"resnet-50": resnet50, "bert-large": bert_large}


def main(argv: list[str]) -> None:
    out = Path(argv[1] if len(argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for name, build in BUNDLED.items():
        onnx.save(build(), out / f"{name}.onnx")
        print(out / f"{name}.onnx")


if __name__ == "__main__":
    main(sys.argv)
