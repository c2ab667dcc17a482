"""An ONNX graph as a list of costable operators (the op-graph IR of non-LLM models).

The batch is a parameter: the graph's symbolic (or first) input dimension is fixed to `batch`,
then `onnx.shape_inference` gives every tensor's shape. Each node becomes one `GraphOp`:

- Conv: an implicit GEMM, m = N x H_out x W_out, n = C_out / groups, k = C_in / groups x kh x kw
  (what cuDNN/TensorRT run); reads the input tensor once, not the im2col matrix.
- MatMul / Gemm against a weight: a GEMM with m = all leading rows; between two activations
  (attention scores and context): a batched GEMM.
- BatchNormalization, Relu/Clip, and a bias Add right after a Conv/GEMM fold into it (inference
  engines fuse them into the epilogue): no cost.
- Reshape, Transpose, Flatten, ... are layout changes the engines remove: no cost.
- Everything else (pooling, Softmax, LayerNormalization, residual Add, activations, Gather) is a
  memory-bound kernel moving its inputs and outputs once. Op types not listed are costed the
  same way and named in `GraphSpec.costed_as_elementwise`, so the user sees what was assumed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from tokenfab.errors import DataFileError, InvalidInputError, UnknownNameError

OpKind = Literal["gemm", "conv", "batched_gemm", "elementwise"]

LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Identity", "Constant",
                        "Cast", "Dropout", "ConstantOfShape", "Range", "Expand"})
EPILOGUE_OPS = frozenset({"BatchNormalization", "Relu", "Clip", "LeakyRelu", "Add"})
ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid", "Tanh", "Erf", "Gelu", "Pow", "Sqrt",
                             "MaxPool", "AveragePool", "GlobalAveragePool", "Softmax", "LayerNormalization", "Gather",
                             "ReduceMean", "Concat", "Slice", "Where", "BatchNormalization", "LeakyRelu", "HardSigmoid",
                             "HardSwish", "Resize", "Split", "Pad"})


@dataclass(frozen=True, slots=True)
class GraphOp:
    """One costable operator; counts in elements (the data type decides the bytes)."""

    name: str
    op_type: str
    kind: OpKind
    m: int = 0
    n: int = 0
    k: int = 0
    groups: int = 1  # grouped conv, or the batch of a batched GEMM
    io_elements: int = 0  # activations read + written (elementwise and conv)
    weight_elements: int = 0


@dataclass(frozen=True)
class GraphSpec:
    """A non-LLM model at one batch size."""

    name: str
    source: str
    batch: int
    ops: tuple[GraphOp, ...]
    weight_elements: int  # parameters (folded BatchNorms excluded)
    peak_activation_elements: int  # largest input + output of any op: the transient working set
    costed_as_elementwise: tuple[str, ...]  # op types without a dedicated model


# The keys of onnx_zoo.BUNDLED, spelled out so that telling a graph from a language model (every `predict`) does not
# import onnx, which costs a fresh process about a second; a unit test checks that the two agree.
BUNDLED_NAMES = ("bert-large", "resnet-50")


def graph_names() -> list[str]:
    return sorted(BUNDLED_NAMES)


def is_graph(model: str) -> bool:
    """True for a path ending in .onnx or a bundled graph name."""
    return model.endswith(".onnx") or model in graph_names()


@functools.lru_cache(maxsize=64)
def load_graph(model: str, batch: int) -> GraphSpec:
    """A bundled graph ('resnet-50', 'bert-large') or a path to an .onnx file, at `batch`."""
    import onnx

    if batch < 1:
        raise InvalidInputError(f"--batch must be >= 1, got {batch}")
    if model.endswith(".onnx"):
        path = Path(model)
        if not path.exists():
            raise DataFileError(f"ONNX model {model} does not exist")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and others for corrupt files
            raise DataFileError(f"cannot read ONNX model {model}: {str(exc).splitlines()[0]}") from None
        name = path.stem
    else:
        from tokenfab.workload.onnx_zoo import BUNDLED
        if model not in BUNDLED:
            raise UnknownNameError("ONNX graph", model, BUNDLED)
        proto, name = BUNDLED[model](), model
    return _parse(proto, name, model, batch)


def _parse(proto, name: str, source: str, batch: int) -> GraphSpec:
    import onnx
    from onnx import shape_inference

    graph = proto.graph
    initializers = {t.name: tuple(t.dims) for t in graph.initializer}
    data_inputs = [i for i in graph.input if i.name not in initializers and _has_batch_dim(i)]
    if not data_inputs:
        raise InvalidInputError(f"ONNX model {source} has no input with a symbolic batch dimension; "
                                f"export it with a dynamic batch axis to predict --batch {batch}")
    for inp in data_inputs:
        first = inp.type.tensor_type.shape.dim[0]
        first.Clear()
        first.dim_value = batch
    data_names = {i.name for i in data_inputs}
    # graph inputs that are not data are weights given by shape only (graph-only files, as bundled)
    weights = {**initializers, **{i.name: tuple(int(d.dim_value) for d in i.type.tensor_type.shape.dim)
                                  for i in graph.input if i.name not in initializers and i.name not in data_names}}
    del graph.value_info[:]
    try:
        inferred = shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except onnx.onnx_cpp2py_export.shape_inference.InferenceError as exc:
        raise DataFileError(f"ONNX shape inference failed on {source}: {str(exc).splitlines()[0]}") from None
    shapes = _shapes(inferred.graph)
    shapes.update(weights)
    ops, unknown = _lower(inferred.graph, shapes, set(weights))
    counted = _parameter_count(inferred.graph, shapes, set(weights))
    peak = max((o.io_elements for o in ops), default=0)
    return GraphSpec(name, source, batch, tuple(ops), counted, peak, tuple(sorted(unknown)))


def _has_batch_dim(inp) -> bool:
    """A data input: its first dimension is symbolic (dim_param) or left open (0 / -1)."""
    dims = inp.type.tensor_type.shape.dim
    return bool(dims) and (bool(dims[0].dim_param) or not dims[0].HasField("dim_value") or dims[0].dim_value <= 0)


def _shapes(graph) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[vi.name] = tuple(int(d.dim_value) for d in dims)
    return out


def _elements(shapes: dict[str, tuple[int, ...]], names) -> int:
    return sum(math.prod(shapes[n]) for n in names if n and n in shapes)


def _lower(graph, shapes, weights: set[str]) -> tuple[list[GraphOp], set[str]]:
    """One GraphOp per costed node; epilogue ops that consume a GEMM/conv output alone are folded."""
    consumers: dict[str, int] = {}
    for node in graph.node:
        for i in node.input:
            consumers[i] = consumers.get(i, 0) + 1
    fused_outputs: dict[str, int] = {}  # output tensor -> index in `ops` of the op that produces it
    ops: list[GraphOp] = []
    unknown: set[str] = set()
    for node in graph.node:
        t = node.op_type
        if t in LAYOUT_OPS:
            continue
        first = node.input[0] if node.input else ""
        producer = fused_outputs.get(first)
        alone = consumers.get(first, 0) == 1
        if producer is not None and alone and _folds(t, node, weights, ops[producer]):
            if t == "Add" and not any(i in weights for i in node.input[1:]):  # residual: the epilogue reads it
                ops[producer] = replace(ops[producer], io_elements=ops[producer].io_elements + _elements(shapes, node.input[1:]))
            fused_outputs.update(dict.fromkeys(node.output, producer))
            continue
        op = _compute_op(node, shapes, weights)
        if op is None:
            if t not in ELEMENTWISE_OPS:
                unknown.add(t)
            io = _elements(shapes, [i for i in node.input if i not in weights]) + _elements(shapes, node.output)
            if t == "Gather":  # an embedding lookup reads the gathered rows, not the table
                io = 2 * _elements(shapes, node.output)
            if not io:
                continue
            op = GraphOp(node.name or t, t, "elementwise", io_elements=io)
        ops.append(op)
        fused_outputs.update(dict.fromkeys(node.output, len(ops) - 1))
    return ops, unknown


def _folds(op_type: str, node, weights: set[str], producer: GraphOp) -> bool:
    """Does this node fold into the epilogue of the op producing its input? Activations fold into
    anything; BatchNorm and bias / residual adds into a conv or GEMM (what TensorRT and cuDNN fuse)."""
    if op_type in ("Relu", "Clip", "LeakyRelu", "Gelu", "Sigmoid", "Tanh", "HardSwish"):
        return True
    if producer.kind not in ("conv", "gemm"):
        return False
    return op_type in ("BatchNormalization", "Add")


def _compute_op(node, shapes, weights: set[str]) -> GraphOp | None:
    t, name = node.op_type, node.name or node.op_type
    if t == "Conv":
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        y = shapes.get(node.output[0])
        if not (x and w and y):
            raise DataFileError(f"ONNX Conv {name}: shapes unknown after shape inference")
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        m = y[0] * math.prod(y[2:])
        return GraphOp(name, t, "conv", m=m, n=w[0] // groups, k=math.prod(w[1:]), groups=groups,
                       io_elements=math.prod(x) + math.prod(y), weight_elements=math.prod(w))
    if t not in ("MatMul", "Gemm"):
        return None
    a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
    y = shapes.get(node.output[0])
    if not (a and b and y):
        raise DataFileError(f"ONNX {t} {name}: shapes unknown after shape inference")
    trans_b = next((a_.i for a_ in node.attribute if a_.name == "transB"), 0)
    if node.input[1] in weights and len(b) == 2:
        n, k = (b[0], b[1]) if trans_b else (b[1], b[0])
        return GraphOp(name, t, "gemm", m=math.prod(y) // n, n=n, k=k, weight_elements=math.prod(b))
    batch = math.prod(y[:-2]) if len(y) > 2 else 1
    return GraphOp(name, t, "batched_gemm", m=y[-2], n=y[-1], k=a[-1], groups=batch,
                   io_elements=math.prod(a) + math.prod(b) + math.prod(y))


def _parameter_count(graph, shapes, weights: set[str]) -> int:
    """Every weight tensor once, except BatchNorm running statistics (buffers, not parameters, as
    torchvision counts them)."""
    stats = {i for node in graph.node if node.op_type == "BatchNormalization" for i in node.input[3:5]}
    used = {i for node in graph.node for i in node.input if i in weights and i not in stats}
    return _elements(shapes, used)
