"""Static-batch exports (`Reshape(x, [1, 512])`) made batch-dynamic, so path methods can batch their steps."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper

BATCH = "N"
N = "onnxcam_batch_size"  # Shape(image)[0:1], read by the rewritten batch-valued constants


def static_batch(proto: onnx.ModelProto, image: str) -> int | None:
    """The hard-coded batch size of the image input, or None when it is already dynamic."""
    vi = next(i for i in proto.graph.input if i.name == image)
    dim = vi.type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def make_dynamic(proto: onnx.ModelProto, image: str, infer) -> onnx.ModelProto:
    """Rewrite the batch dimension and batch-valued constants; keep the rewrite only when batch 2 gives exactly
    two batch-1 results (otherwise warn: the engine then runs one row at a time).

    Batch-valued constants: Reshape targets (`allowzero` dropped where the target has no other 0), Expand and
    ConstantOfShape shapes, and constant tensors concatenated with batch rows (a ViT's folded class token)."""
    batch = static_batch(proto, image)
    if batch is None:
        return proto
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    for vi in [*g.input, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if vi.name == image or (dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch):
            dims[0].dim_param = BATCH
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes = []
    for node in g.node:
        nodes += _dynamic(node, consts, batch, g)
        nodes.append(node)
    if any(N in n.input for n in nodes):
        nodes.insert(0, helper.make_node("Shape", [image], [N], start=0, end=1, name=N))
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    out = infer(out)
    if _batches_agree(out, image, batch):
        return out
    warnings.warn("the model's batch size is fixed and could not be made dynamic; onnxcam runs it one row at a time",
                  stacklevel=3)
    return proto


def _dynamic(node: onnx.NodeProto, consts: dict, batch: int, g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Rewire `node` off its batch-valued constant inputs; returns the nodes that must run before it."""
    def shape_const(k: int) -> np.ndarray | None:
        value = consts.get(node.input[k]) if len(node.input) > k else None
        return value if value is not None and value.ndim == 1 and len(value) > 1 and value[0] == batch else None

    name = f"{node.name or node.output[0]}_dynamic_batch"
    if node.op_type == "Reshape" and shape_const(1) is not None:
        shape = shape_const(1).copy()
        zero = next((a for a in node.attribute if a.name == "allowzero"), None)
        if zero is not None and zero.i:
            if (shape[1:] == 0).any():
                return []  # literal zero-size dims: leave the node as exported
            node.attribute.remove(zero)
        shape[0] = 0  # copy the batch of the input
        g.initializer.append(numpy_helper.from_array(shape.astype(np.int64), name))
        node.input[1] = name
        return []
    if node.op_type in ("Expand", "ConstantOfShape"):
        k = 1 if node.op_type == "Expand" else 0
        shape = shape_const(k)
        if shape is None:
            return []
        g.initializer.append(numpy_helper.from_array(shape[1:].astype(np.int64), f"{name}_rest"))
        node.input[k] = name
        return [helper.make_node("Concat", [N, f"{name}_rest"], [name], axis=0, name=name)]
    if node.op_type == "Concat" and any(i not in consts for i in node.input):
        axis = next(a.i for a in node.attribute if a.name == "axis")
        added = []
        for k, i in enumerate(node.input):
            value = consts.get(i)
            if value is not None and value.ndim > 1 and axis % value.ndim != 0 and value.shape[0] == batch == 1:
                ones = f"{name}_{k}_ones"
                g.initializer.append(numpy_helper.from_array(np.ones(value.ndim - 1, np.int64), ones))
                added += [helper.make_node("Concat", [N, ones], [f"{name}_{k}_shape"], axis=0),
                          helper.make_node("Expand", [i, f"{name}_{k}_shape"], [f"{name}_{k}"])]
                node.input[k] = f"{name}_{k}"
        return added
    return []


def _batches_agree(proto: onnx.ModelProto, image: str, batch: int) -> bool:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failing rewrite is expected here, not an error to print
    try:
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        shape = [d.dim_value or 1 for d in next(i for i in proto.graph.input if i.name == image).type.tensor_type.shape.dim]
        x = np.random.default_rng(0).standard_normal([2 * batch, *shape[1:]]).astype(np.float32)
        if [i.name for i in session.get_inputs()] != [image]:
            return False
        both = session.run(None, {image: x})
        halves = [session.run(None, {image: x[k * batch : (k + 1) * batch]}) for k in range(2)]
    except Exception:
        return False
    return all(np.allclose(w, np.concatenate([a, b]), rtol=1e-4, atol=1e-5) for w, a, b in zip(both, *halves))
