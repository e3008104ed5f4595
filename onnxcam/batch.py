"""Static-batch exports (`Reshape(x, [1, 512])`) made batch-dynamic, so path methods can batch their steps."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import numpy_helper

BATCH = "N"


def static_batch(proto: onnx.ModelProto, image: str) -> int | None:
    """The hard-coded batch size of the image input, or None when it is already dynamic."""
    vi = next(i for i in proto.graph.input if i.name == image)
    dim = vi.type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def make_dynamic(proto: onnx.ModelProto, image: str, infer) -> onnx.ModelProto:
    """Rewrite the batch dimension and batch-valued shape constants; keep the rewrite only when
    batch 2 gives exactly two batch-1 results (otherwise warn: the engine then runs one row at a time)."""
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
    consts = {t.name: t for t in g.initializer}
    for node in g.node:
        if node.op_type == "Reshape" and node.input[1] in consts:
            shape = numpy_helper.to_array(consts[node.input[1]])
            if shape.ndim == 1 and len(shape) > 1 and shape[0] == batch:
                shape = shape.copy()
                shape[0] = 0  # copy the batch of the input
                name = f"{node.input[1]}_dynamic_batch_{node.name or len(consts)}"
                g.initializer.append(numpy_helper.from_array(shape.astype(np.int64), name))
                node.input[1] = name
    del g.value_info[:]
    out = infer(out)
    if _batches_agree(out, image, batch):
        return out
    warnings.warn("the model's batch size is fixed and could not be made dynamic; onnxcam runs it one row at a time",
                  stacklevel=3)
    return proto


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
