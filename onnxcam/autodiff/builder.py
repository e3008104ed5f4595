"""Reverse-mode sweep: append ∂ sum(grad_seed · output) / ∂ wrt to an inference graph, in standard ONNX ops."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import OnnxcamError, UnsupportedOpError
from ..model import FLOAT_TYPES, find_score_output, read_model
from .fold import fold_crops
from .rules import RULES

GRAD_SEED = "grad_seed"
Dim = int | str | None
# fp16/bf16 tensors are read in float32 by the backward sweep: ONNX Runtime's CPU lacks many of the kernels it
# needs in those types (ScatterElements with reduction "add" for a start), and float32 sums lose less
LOW_PRECISION = {TensorProto.FLOAT16, TensorProto.BFLOAT16}
# ops whose integer outputs stand for real numbers (quantized tensors): the gradient flows through them, to the
# QuantizeLinear rule or to an UnsupportedOpError naming the integer op
QUANTIZED = {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def grad_name(name: str) -> str:
    """Name of the gradient output for tensor `name` in a gradient model."""
    return f"{name}_grad"


def names_in(proto: onnx.ModelProto) -> set[str]:
    """Every tensor and node name of the main graph: names onnxcam adds to it must be new."""
    g = proto.graph
    return ({v.name for v in [*g.input, *g.output, *g.value_info]} | {t.name for t in g.initializer}
            | {o for n in g.node for o in n.output} | {n.name for n in g.node})


def refuse_taken(proto: onnx.ModelProto, names) -> None:
    """A model that already uses a name onnxcam must add (an input or output of its graphs) is refused in one line,
    instead of ONNX Runtime meeting two definitions of the name."""
    taken = names_in(proto)
    clash = next((n for n in names if n in taken), None)
    if clash is not None:
        raise OnnxcamError(f"the model already has a tensor or node named {clash[:80]!r}, a name onnxcam adds to its "
                           "graphs; rename it in the model")


@dataclass
class Node:
    """A forward node as the rules see it; `needs[i]` says whether input i wants a gradient."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
    needs: list[bool] = field(default_factory=list)

    @classmethod
    def of(cls, proto: onnx.NodeProto) -> Node:
        attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        return cls(proto.op_type, proto.name or proto.output[0], list(proto.input), list(proto.output), attrs)

    def input(self, i: int) -> str | None:
        """The i-th input name, or None when absent or empty (optional inputs)."""
        return self.inputs[i] if i < len(self.inputs) and self.inputs[i] else None


class Builder:
    """What a gradient rule may use: static facts about tensors and a way to emit nodes. `cpu`: the graph runs on
    ONNX Runtime's CPU provider, so rules may use forms that keep its blocked layout (see `blocked`)."""

    def __init__(self, proto: onnx.ModelProto, cpu: bool = True):
        self.cpu = cpu
        self.opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        self.types: dict[str, int] = {}
        self.shapes: dict[str, tuple[Dim, ...] | None] = {}
        graph = proto.graph
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            tt = vi.type.tensor_type
            self.types[vi.name] = tt.elem_type
            self.shapes[vi.name] = _dims(tt) if tt.HasField("shape") else None
        self.values: dict[str, np.ndarray] = {}
        for t in graph.initializer:
            self.values[t.name] = numpy_helper.to_array(t)
            self.types[t.name] = t.data_type
            self.shapes[t.name] = tuple(t.dims)
        for n in graph.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.declared: list[onnx.ValueInfoProto] = []
        self._count = 0
        self._wide: dict[str, str] = {}
        self._taken = names_in(proto)  # fresh names skip the model's own
        self.uniform: dict[str, str] = {}  # gradients equal at every spatial position → their (N, C, 1, …) value

    # facts ------------------------------------------------------------------------------------
    def shape(self, name: str) -> tuple[Dim, ...] | None:
        return self.shapes.get(name)

    def rank(self, name: str) -> int:
        s = self.shape(name)
        if s is None:
            raise OnnxcamError(f"the rank of tensor {name!r} is unknown after shape inference")
        return len(s)

    def static_shape(self, name: str) -> tuple[int, ...] | None:
        s = self.shape(name)
        return s if s is not None and all(isinstance(d, int) for d in s) else None

    def blocked(self, x: str) -> bool:
        """A float32 N·C·H·W tensor with known C: ONNX Runtime's CPU runs Conv, Mul and Sum on it in its blocked
        NCHWc layout, where Greater, Where, Expand and ConvTranspose force reorders to plain NCHW and back. Other
        providers (CUDA, TensorRT) get the plain forms."""
        shape = self.shape(x)
        return self.cpu and self.dtype(x) == np.float32 and shape is not None and len(shape) == 4 and isinstance(shape[1], int)

    def value(self, name: str | None) -> np.ndarray | None:
        """The constant value of a tensor (initializer or Constant), else None."""
        return None if not name else self.values.get(name)

    def dtype(self, name: str) -> np.dtype:
        return helper.tensor_dtype_to_np_dtype(self.types.get(name, TensorProto.FLOAT))

    # emission ---------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self._count += 1
        while f"onnxcam_grad/{hint}_{self._count}" in self._taken:
            self._count += 1
        return f"onnxcam_grad/{hint}_{self._count}"

    def op(self, op_type: str, *inputs: str | None, outputs: int = 1, **attrs) -> str | list[str]:
        """Emit one node; returns its output name (or names when outputs > 1)."""
        names = [self.fresh(op_type) for _ in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, [i or "" for i in inputs], names, name=names[0], **attrs))
        return names[0] if outputs == 1 else names

    def const(self, value, like: str | None = None, dtype=None) -> str:
        """A constant tensor; float values take the dtype of tensor `like` (float64 tests need that)."""
        if dtype is None:
            dtype = self.dtype(like) if like is not None else np.asarray(value).dtype
        name = self.fresh("const")
        array = np.asarray(value, dtype=dtype)
        self.initializers.append(numpy_helper.from_array(array, name))
        self.values[name] = array
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), dtype=np.int64)

    def shape_of(self, name: str) -> str:
        s = self.static_shape(name)
        return self.ints(s) if s is not None else self.op("Shape", name)

    def reshape_like(self, dx: str, x: str) -> str:
        return self.op("Reshape", dx, self.shape_of(x))

    def reduce(self, op_type: str, x: str, axes, keepdims: int = 1) -> str:
        """ReduceSum/Mean/Max in the form the opset wants (axes as input from 13 for Sum, 18 for others)."""
        axes = [int(a) for a in axes]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, x, self.ints(axes), keepdims=keepdims)
        return self.op(op_type, x, axes=axes, keepdims=keepdims)

    def unbroadcast(self, dx: str, x: str, y: str) -> str:
        """Sum dx (shaped like output y) down to the shape of input x (numpy broadcasting)."""
        sx, sy = self.shape(x), self.shape(y)
        if sx is not None and sx == sy:
            return dx
        if sx is not None and sy is not None and len(sx) <= len(sy):
            lead = len(sy) - len(sx)
            axes, known = list(range(lead)), True
            for i, (a, b) in enumerate(zip(sx, sy[lead:])):
                if a == 1 and b != 1:
                    axes.append(lead + i)
                elif a != b and not (isinstance(a, int) and a == b):
                    known = False
            if known:
                return self.reshape_like(self.reduce("ReduceSum", dx, axes) if axes else dx, x)
        return self._unbroadcast_dynamic(dx, x)

    def _unbroadcast_dynamic(self, dx: str, x: str) -> str:
        """Broadcast axes found at run time, for shapes that inference left unknown."""
        rank_y = self.op("Size", self.op("Shape", dx))
        shape_x = self.op("Shape", x)
        pad = self.op("Sub", rank_y, self.op("Size", shape_x))
        ones = self.op("Expand", self.ints([1]), self.op("Reshape", pad, self.ints([1])))
        padded = self.op("Concat", ones, shape_x, axis=0)
        differs = self.op("Not", self.op("Equal", padded, self.op("Shape", dx)))
        axes = self.op("Reshape", self.op("NonZero", differs), self.ints([-1]))
        summed = self.op("ReduceSum", dx, axes, keepdims=1, noop_with_empty_axes=1)
        return self.op("Reshape", summed, shape_x)

    def wide(self, name: str) -> str:
        """The float32 copy of an fp16/bf16 tensor (one Cast, made once), else the tensor itself."""
        if not name or self.types.get(name) not in LOW_PRECISION:
            return name
        if name not in self._wide:
            wide = self.op("Cast", name, to=TensorProto.FLOAT)
            self.types[wide], self.shapes[wide] = TensorProto.FLOAT, self.shape(name)
            if name in self.values:
                self.values[wide] = self.values[name].astype(np.float32)
            self._wide[name] = wide
        return self._wide[name]

    def declare(self, name: str, like: str) -> None:
        """Record that `name` has the type and shape of `like` (a gradient has its primal's, in float32 for fp16 and
        bf16): with the symbolic batch kept, ONNX Runtime can match shapes where its own inference loses them
        (after Expand, Reshape). Gradients of quantized (integer) tensors are left undeclared."""
        elem = self.types.get(like)
        elem = TensorProto.FLOAT if elem in LOW_PRECISION else elem
        if name != GRAD_SEED and name not in self.shapes and self.shape(like) is not None and elem in FLOAT_TYPES:
            self.shapes[name], self.types[name] = self.shape(like), elem
            self.declared.append(helper.make_tensor_value_info(name, elem, list(self.shape(like))))

    def zeros_like(self, x: str) -> str:
        return self.op("ConstantOfShape", self.shape_of(x), value=numpy_helper.from_array(np.zeros(1, self.dtype(x))))

    def add_all(self, terms: list[str]) -> str:
        return terms[0] if len(terms) == 1 else self.op("Sum", *terms)


def _dims(tt) -> tuple[Dim, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)


def gradient_model(model, wrt: list[str] | str, output: str | None = None, cpu: bool = True) -> onnx.ModelProto:
    """The model plus input `grad_seed` and outputs grad_name(n) = ∂ sum(grad_seed·output)/∂n for n in wrt.
    `cpu=False` gives the plain-op graph meant for CUDA or TensorRT."""
    proto, name = read_model(model)
    return build_gradients(proto, [wrt] if isinstance(wrt, str) else list(wrt), output or find_score_output(proto, name)[0],
                           cpu)


def build_gradients(proto: onnx.ModelProto, wrt: list[str], output: str, cpu: bool = True,
                    uniform: dict[str, str] | None = None) -> onnx.ModelProto:
    """gradient_model for a graph already normalized by onnxcam.model (shapes inferred, constants folded); `cpu`:
    the rules' CPU-layout forms, else plain ops for GPU providers. `uniform`, when given, receives the wrt tensors
    whose gradient is the same at every spatial position (a GlobalAveragePool reads them) with the tensor holding
    that (N, C, 1, …) value, kept in the graph: a spatial mean of their gradient needs no reduction."""
    b = Builder(proto, cpu)
    for name in [*wrt, output]:
        if name not in b.types:
            raise OnnxcamError(f"tensor {name!r} is not in the model")
    refuse_taken(proto, [GRAD_SEED, *map(grad_name, wrt)])
    grads = backward(proto, b, wrt, output)
    for name in wrt:
        if b.types[name] in LOW_PRECISION:
            grads[name] = b.op("Cast", grads[name], to=b.types[name])
    if uniform is not None:
        uniform.update({name: b.uniform[grads[name]] for name in wrt if grads[name] in b.uniform})
    outputs = {*grads.values(), *(uniform or {}).values()}
    nodes = fold_crops(_live_nodes(b.nodes, set(outputs)), b.values, outputs)
    used, made = {i for n in nodes for i in n.input}, {o for n in nodes for o in n.output}
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    g.node.extend(nodes)
    g.initializer.extend(t for t in b.initializers if t.name in used)
    g.value_info.extend(v for v in b.declared if v.name in made)
    g.input.append(_value_info(GRAD_SEED, b, output))
    for name in wrt:
        g.node.append(helper.make_node("Identity", [grads[name]], [grad_name(name)], name=grad_name(name)))
        g.output.append(_value_info(grad_name(name), b, name))
    return out


def _live_nodes(nodes: list[onnx.NodeProto], wanted: set[str]) -> list[onnx.NodeProto]:
    """The emitted nodes that the gradients need (drops the float32 copies of fp16 tensors no rule read)."""
    kept = []
    for node in reversed(nodes):
        if any(o in wanted for o in node.output):
            kept.append(node)
            wanted.update(node.input)
    return kept[::-1]


def _value_info(name: str, b: Builder, like: str) -> onnx.ValueInfoProto:
    shape = b.shape(like)
    return helper.make_tensor_value_info(name, b.types[like], list(shape) if shape is not None else None)


def backward(proto: onnx.ModelProto, b: Builder, wrt: list[str], output: str) -> dict[str, str]:
    """Emit the reverse sweep into `b`; returns the gradient tensor of each wrt name."""
    nodes = [Node.of(n) for n in proto.graph.node]
    live = _depends_on(nodes, set(wrt), b)
    b.types[GRAD_SEED], b.shapes[GRAD_SEED] = b.types[output], b.shape(output)
    contributions: dict[str, list[str]] = defaultdict(list, {output: [b.wide(GRAD_SEED)]})
    for node in reversed(_on_path(nodes, output, live)):
        dy = [_accumulate(b, contributions, o) for o in node.outputs]
        node.needs = [i in live for i in node.inputs]
        if not any(dy) or not any(node.needs):
            continue
        rule = RULES.get(node.op)
        if rule is None:
            raise UnsupportedOpError(node.op, node.name)
        wide = Node(node.op, node.name, [b.wide(i) for i in node.inputs], [b.wide(o) for o in node.outputs],
                    node.attrs, node.needs)
        dx = list(rule(b, wide, dy)) + [None] * len(node.inputs)
        for name, need, d in zip(node.inputs, node.needs, dx):
            if need and d is not None:
                contributions[name].append(d)
                b.declare(d, like=name)
    result = {}
    for name in wrt:
        if not contributions.get(name):
            raise OnnxcamError(f"output {output!r} does not depend on tensor {name!r}; nothing to differentiate")
        result[name] = _accumulate(b, contributions, name)
    return result


def _accumulate(b: Builder, contributions: dict[str, list[str]], name: str) -> str | None:
    """Sum the gradient contributions of a tensor with several consumers (once; the sum is kept)."""
    terms = contributions.get(name)
    if not terms:
        return None
    if len(terms) > 1:
        contributions[name] = [b.add_all(terms)]
        b.declare(contributions[name][0], like=name)
    return contributions[name][0]


def _depends_on(nodes: list[Node], wrt: set[str], b: Builder) -> set[str]:
    """Tensors reachable from wrt through float edges (integer/bool edges stop the gradient, unless quantized)."""
    live = set(wrt)
    for node in nodes:
        if any(i in live for i in node.inputs):
            live.update(o for o in node.outputs if b.types.get(o, TensorProto.FLOAT) in FLOAT_TYPES or node.op in QUANTIZED)
    return live


def _on_path(nodes: list[Node], output: str, live: set[str]) -> list[Node]:
    """Nodes (in forward order) between the wrt tensors and the output: no weight gradients are built."""
    wanted, path = {output}, []
    for node in reversed(nodes):
        if any(o in wanted for o in node.outputs) and any(i in live for i in node.inputs):
            wanted.update(i for i in node.inputs if i in live)
            path.append(node)
    return path[::-1]


def unsupported_ops(proto: onnx.ModelProto, wrt: list[str], output: str) -> list[tuple[str, str]]:
    """(op type, node name) of every node on the gradient path that has no rule (the sweep stops at the first)."""
    b = Builder(proto)
    nodes = [Node.of(n) for n in proto.graph.node]
    return [(n.op, n.name) for n in _on_path(nodes, output, _depends_on(nodes, set(wrt), b)) if n.op not in RULES]
