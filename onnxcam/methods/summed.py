"""Path rows summed inside ONNX Runtime: per chunk only each image's sums of the method's contributions leave the
session, with the chunk's last row for methods of consecutive pairs (fed back as the next chunk's first `prev`), so
the rows' activations and gradients stay where they were computed (on a GPU, on the device)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..autodiff.builder import Builder, grad_name
from ..surgery import explainer_graph
from .arrays import OnnxArrays, Symbol
from .definition import Gradient, Row

MEMBERS = "onnxcam_members"  # (I, R): 1 where row r counts for the chunk's i-th image
ROW_WEIGHTS = "onnxcam_row_weights"  # (R, 1, …): each row's path weight
CARRY = {"g": "onnxcam_carry_g", "a": "onnxcam_carry_a"}  # (1, …): the previous chunk's last row
LAST = {"g": "onnxcam_last_g", "a": "onnxcam_last_a"}


def summed(name: str) -> str:
    return f"onnxcam_sum/{name}"


def contribution_key(d: Gradient, o) -> str:
    """What a summing graph depends on besides the model, layer and score: the nodes the method's contribution emits
    for these options (so that a call with other steps or another baseline reuses the session)."""
    proto = helper.make_model(helper.make_graph([], "key", [], []), opset_imports=[helper.make_opsetid("", 17)])
    ops = OnnxArrays(Builder(proto))
    g, a, w, pg, pa = (Symbol(ops, name) for name in ("g", "a", "w", "prev_g", "prev_a"))
    contributions = d.contribution(ops, Row(g=g, w=w, a=a, prev=Row(g=pg, w=w, a=pa)), o)
    return repr((sorted((k, t.name) for k, t in contributions.items()), [str(n) for n in ops.b.nodes],
                 [str(t) for t in ops.b.initializers]))


def summing_graph(model, d: Gradient, layer, o, cpu: bool) -> onnx.ModelProto | None:
    """The method's gradient graph with its contributions summed per image of the chunk (a MatMul by MEMBERS); None
    where the engine sums in numpy: layers that are not float32 channels-first grids, fp16 tensors, and rows of
    sizes known only at run time for pair methods (the first chunk's carry is a row of zeros)."""
    wrt = layer.name if layer is not None else model.image_input
    proto = explainer_graph(model, [wrt], o.score, (layer.name,) if layer is not None else (), cpu=cpu)
    b = Builder(proto)
    tensors = {"g": grad_name(wrt), **({"a": layer.name} if layer is not None else {})}
    if (layer is not None and not layer.channels_first) or any(
            b.types.get(t) != TensorProto.FLOAT or b.shape(t) is None
            or (d.pairs and not all(isinstance(v, int) for v in b.shape(t)[1:])) for t in tensors.values()):
        return None
    ops = OnnxArrays(b, layer.rank if layer is not None else model.rank)
    row = {k: Symbol(ops, t) for k, t in tensors.items()}
    rank = len(b.shape(tensors["g"]))
    w = Symbol(ops, ROW_WEIGHTS)
    step = Row(g=row["g"], w=w, a=row.get("a"))
    if d.pairs:
        prev = {k: ops.node("Concat", CARRY[k], t[:-1].name, axis=0) for k, t in row.items()}
        step.prev = Row(g=prev["g"], w=w, a=prev.get("a"))
    sums = []
    for name, t in d.contribution(ops, step, o).items():
        flat = b.op("Reshape", t.name, b.ints([0, -1]))
        rest = b.op("Slice", b.op("Shape", t.name), b.ints([1]), b.ints([np.iinfo(np.int64).max]))
        shape = b.op("Concat", b.ints([-1]), rest, axis=0)
        b.nodes.append(helper.make_node("Reshape", [b.op("MatMul", MEMBERS, flat), shape], [summed(name)],
                                        name=summed(name)))
        sums.append(summed(name))
    outputs = list(sums)
    if d.pairs:
        for k, t in row.items():
            b.nodes.append(helper.make_node("Slice", [t.name, b.ints([-1]), b.ints([np.iinfo(np.int64).max]),
                                                      b.ints([0])], [LAST[k]], name=LAST[k]))
            outputs.append(LAST[k])
    g = proto.graph
    g.node.extend(b.nodes)
    g.initializer.extend(b.initializers)
    vi = helper.make_tensor_value_info
    g.input.extend([vi(MEMBERS, TensorProto.FLOAT, ["I", "R"]),
                    vi(ROW_WEIGHTS, TensorProto.FLOAT, ["R", *[1] * (rank - 1)])])
    if d.pairs:
        g.input.extend(vi(CARRY[k], TensorProto.FLOAT, [1, *b.shape(t)[1:]]) for k, t in tensors.items())
    g.output.extend(vi(name, TensorProto.FLOAT, None) for name in outputs)
    return proto
