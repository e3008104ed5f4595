"""Compose the graphs the methods run: score selection, the target seed inside the graph, exposed layers."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .autodiff.builder import GRAD_SEED, build_gradients, refuse_taken
from .errors import OnnxcamError
from .model import Model

TARGET = "target"  # int64 (N,), −1 = top-1 of the logits
LOGITS = "onnxcam_logits"
SCORES = ("logit", "prob")
PROB = "onnxcam_prob"
_SEED = ("onnxcam_zero", "onnxcam_off_on", "onnxcam_batch", "onnxcam_target_n", "onnxcam_top1", "onnxcam_wants_top1",
         "onnxcam_class", "onnxcam_classes")  # _seed_from_target's tensors and nodes


def _value_info(proto: onnx.ModelProto, name: str) -> onnx.ValueInfoProto:
    for vi in [*proto.graph.value_info, *proto.graph.output, *proto.graph.input]:
        if vi.name == name:
            return vi
    raise OnnxcamError(f"tensor {name!r} has no inferred type; the model needs shape inference to succeed")


def _renamed(vi: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(vi)
    out.name = name
    return out


def score_tensor(model: Model, proto: onnx.ModelProto, score: str) -> str:
    """The tensor whose gradient is taken: the logits, or their softmax (appended when the model has none)."""
    if score not in SCORES:
        raise OnnxcamError(f"unknown score {score!r}; choose 'logit' or 'prob'")
    if score == "logit":
        return model.logits
    if model.output_is_prob:
        return model.score_output
    prob = PROB
    proto.graph.node.append(helper.make_node("Softmax", [model.logits], [prob], axis=-1, name=prob))
    proto.graph.value_info.append(_renamed(_value_info(proto, model.logits), prob))
    return prob


def explainer_graph(model: Model, wrt: list[str], score: str = "logit", expose: tuple[str, ...] = (),
                    seeded: bool = False, cpu: bool = True) -> onnx.ModelProto:
    """Inputs: the image and `target`; outputs: LOGITS, the `expose`d tensors and ∂score/∂(each wrt).

    The seed one_hot(target, or argmax of the logits where target = −1) is built inside the graph,
    so Grad-CAM of the top-1 class costs one forward and one partial backward pass. A `seeded` graph takes the
    seed weights (shaped like the explained output) as its input grad_seed instead. `cpu`: CPU-layout gradient forms
    (False: plain ops, for CUDA and TensorRT)."""
    refuse_taken(model.proto, [TARGET, LOGITS, PROB, *_SEED])
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    out = score_tensor(model, proto, score)
    proto = build_gradients(proto, wrt, out, cpu)
    if not seeded:
        _seed_from_target(proto, model.logits, out)
    outputs = [_renamed(_value_info(proto, model.logits), LOGITS)]
    proto.graph.node.append(helper.make_node("Identity", [model.logits], [LOGITS], name=LOGITS))
    outputs += [_value_info(proto, name) for name in expose]
    kept = [o for o in proto.graph.output if o.name not in {m.name for m in model.proto.graph.output}]
    del proto.graph.output[:]
    proto.graph.output.extend(outputs + kept)
    return proto


def forward_graph(model: Model, expose: tuple[str, ...]) -> onnx.ModelProto:
    """No gradients: LOGITS and the exposed tensors (for gradient-free methods on any model)."""
    refuse_taken(model.proto, [LOGITS])
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    proto.graph.node.append(helper.make_node("Identity", [model.logits], [LOGITS], name=LOGITS))
    outputs = [_renamed(_value_info(proto, model.logits), LOGITS), *(_value_info(proto, n) for n in expose)]
    del proto.graph.output[:]
    proto.graph.output.extend(outputs)
    return proto


def rows_of_one_hot(proto: onnx.ModelProto, classes: str) -> None:
    """grad_seed = one_hot(classes) times a matrix is a row of it: when the gradient's first node is such a Gemm (the
    classifier's, explained by its logit) it becomes a Gather, which reads one row of the weight per image instead of
    all of it. grad_seed's own node goes when nothing else reads it."""
    g = proto.graph
    readers = [n for n in g.node if GRAD_SEED in n.input]
    if len(readers) != 1 or readers[0].op_type != "Gemm" or list(readers[0].input[:1]) != [GRAD_SEED] or \
            len(readers[0].input) > 2:
        return
    gemm = readers[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
        return
    at = list(g.node).index(gemm)
    if attrs.get("transB", 0):  # dY · Wᵀ: column c of W, as a row
        columns = f"{gemm.output[0]}/columns"
        nodes = [helper.make_node("Gather", [gemm.input[1], classes], [columns], axis=1, name=columns),
                 helper.make_node("Transpose", [columns], [gemm.output[0]], perm=[1, 0], name=gemm.name)]
    else:
        nodes = [helper.make_node("Gather", [gemm.input[1], classes], [gemm.output[0]], axis=0, name=gemm.name)]
    g.node.remove(gemm)
    for k, node in enumerate(nodes):
        g.node.insert(at + k, node)
    seed = next(n for n in g.node if GRAD_SEED in n.output)
    if not any(GRAD_SEED in n.input for n in g.node):
        g.node.remove(seed)


def _seed_from_target(proto: onnx.ModelProto, logits: str, out: str) -> None:
    """Replace the grad_seed input by one_hot(where(target < 0, argmax(logits), target), classes)."""
    seed_vi = next(i for i in proto.graph.input if i.name == GRAD_SEED)
    proto.graph.input.remove(seed_vi)
    proto.graph.input.append(helper.make_tensor_value_info(TARGET, TensorProto.INT64, ["T"]))
    off_on = np.array([0, 1], helper.tensor_dtype_to_np_dtype(seed_vi.type.tensor_type.elem_type))
    proto.graph.initializer.extend(
        [numpy_helper.from_array(np.array(0, np.int64), "onnxcam_zero"), numpy_helper.from_array(off_on, "onnxcam_off_on")]
    )
    nodes = [
        helper.make_node("Shape", [logits], ["onnxcam_batch"], end=1),
        helper.make_node("Expand", [TARGET, "onnxcam_batch"], ["onnxcam_target_n"]),  # (1,) serves every image
        helper.make_node("ArgMax", [logits], ["onnxcam_top1"], axis=-1, keepdims=0),
        helper.make_node("Less", ["onnxcam_target_n", "onnxcam_zero"], ["onnxcam_wants_top1"]),
        helper.make_node("Where", ["onnxcam_wants_top1", "onnxcam_top1", "onnxcam_target_n"], ["onnxcam_class"]),
        helper.make_node("Shape", [out], ["onnxcam_classes"], start=-1),
        helper.make_node("OneHot", ["onnxcam_class", "onnxcam_classes", "onnxcam_off_on"], [GRAD_SEED], axis=-1),
    ]
    first = next(i for i, n in enumerate(proto.graph.node) if GRAD_SEED in n.input)  # keep the graph toposorted
    for k, node in enumerate(nodes):
        node.name = node.output[0]
        proto.graph.node.insert(first + k, node)
    rows_of_one_hot(proto, "onnxcam_class")
