"""Pooling: max pools route dY through the argmax indices, average pools spread it evenly."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ...errors import UnsupportedOpError
from . import rule


def scatter_indices(b, x: str, indices: str, g: str) -> str:
    """dX[flat index] += dY: MaxPool's Indices are flat positions in the unpadded N·C·H·W input."""
    zero = numpy_helper.from_array(np.zeros(1, b.dtype(x)))
    zeros = b.op("ConstantOfShape", b.op("Reshape", b.op("Size", x), b.ints([1])), value=zero)
    flat = b.op(
        "ScatterElements", zeros, b.op("Reshape", indices, b.ints([-1])), b.op("Reshape", g, b.ints([-1])),
        axis=0, reduction="add",
    )
    return b.reshape_like(flat, x)


@rule("MaxPool")
def max_pool(b, n, dy):
    if n.attrs.get("storage_order", 0):
        raise UnsupportedOpError(n.op, n.name, "storage_order=1")
    x = n.inputs[0]
    indices = n.outputs[1] if len(n.outputs) > 1 and n.outputs[1] else b.op("MaxPool", x, outputs=2, **n.attrs)[1]
    return [scatter_indices(b, x, indices, dy[0])]


@rule("GlobalMaxPool")
def global_max_pool(b, n, dy):
    """The first maximum gets the gradient, as torch's adaptive_max_pool2d."""
    x = n.inputs[0]
    shape = b.shape(x)
    if shape is None or not all(isinstance(d, int) for d in shape[2:]):
        raise UnsupportedOpError(n.op, n.name, "spatial input size unknown after shape inference")
    indices = b.op("MaxPool", x, kernel_shape=list(shape[2:]), outputs=2)[1]
    return [scatter_indices(b, x, indices, dy[0])]


@rule("GlobalAveragePool")
def global_average_pool(b, n, dy):
    x = n.inputs[0]
    count = b.op("Cast", b.op("Div", b.op("Size", x), b.op("Size", n.outputs[0])), to=b.types[x])
    return [b.op("Expand", b.op("Div", dy[0], count), b.shape_of(x))]
