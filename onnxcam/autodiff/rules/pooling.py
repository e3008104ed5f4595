"""Pooling: max pools route dY through the argmax indices, average pools spread it evenly."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ...errors import UnsupportedOpError
from . import rule
from .linear import conv_geometry, runtime_pads, spatial_sizes, transposed_to_input


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
    """The first maximum gets the gradient, as torch's adaptive_max_pool2d: ArgMax over the flattened plane."""
    x = n.inputs[0]
    planes = b.op("Reshape", x, b.ints([0, 0, -1]))
    first = b.op("ArgMax", planes, axis=2, keepdims=1)
    count = b.op("Slice", b.op("Shape", planes), b.ints([2]), b.ints([3]))
    positions = b.op("Range", b.const(0, dtype=np.int64), b.op("Squeeze", count), b.const(1, dtype=np.int64))
    g = b.op("Reshape", dy[0], b.ints([0, 0, 1]))
    return [b.reshape_like(b.op("Where", b.op("Equal", positions, first), g, b.const(0, like=x)), x)]


SMALL_GRID = 100  # the Conv form costs (H·W)² per channel: only for final feature maps such as 7×7


@rule("GlobalAveragePool")
def global_average_pool(b, n, dy):
    """dX = dY/(H·W) everywhere. On small blocked-layout grids: a depthwise Conv of the 1×1 dY with an H×W kernel
    of 1/(H·W), padded so that one tap meets dY at each position, instead of Expand (see Builder.blocked)."""
    x = n.inputs[0]
    spatial = (b.shape(x) or [None])[2:]
    if b.blocked(x) and all(isinstance(d, int) for d in spatial) and 0 < spatial[0] * spatial[1] <= SMALL_GRID:
        channels, (h, w) = b.shape(x)[1], spatial
        kernel = b.const(np.full((channels, 1, h, w), 1 / (h * w)), like=x)
        dx = b.op("Conv", dy[0], kernel, group=channels, kernel_shape=[h, w], pads=[h - 1, w - 1, h - 1, w - 1])
        b.uniform[dx] = b.op("Mul", dy[0], b.const(1 / (h * w), like=x))
        return [dx]
    count = b.op("Cast", b.op("Div", b.op("Size", x), b.op("Size", n.outputs[0])), to=b.types[x])
    each = b.op("Div", dy[0], count)
    dx = b.op("Expand", each, b.shape_of(x))
    b.uniform[dx] = each
    return [dx]


@rule("AveragePool")
def average_pool(b, n, dy):
    """dX = ConvTranspose(dY ⊙ w, ones) per channel, w = 1/divisor of each window, measured on this very node:
    w = AveragePool(ones) / (valid positions in the window), so count_include_pad and ceil_mode follow ORT.
    Sizes unknown until run time: the same with ones and sizes from Shape (_average_pool_runtime)."""
    x, y = n.inputs[0], n.outputs[0]
    kernel = list(n.attrs["kernel_shape"])
    strides, dilations, begin, end, spatial = conv_geometry(b, n, x, kernel)
    out = list((b.shape(y) or [None])[2:])
    if None in spatial or len(out) != len(kernel) or not all(isinstance(o, int) for o in out):
        return [_average_pool_runtime(b, n, dy[0], kernel, strides, dilations, begin, end)]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    # ceil_mode windows may run past the end pad: widen it so that both convolutions produce `out` positions
    end = [max(e, (o - 1) * s + k - i - p) for e, o, s, k, i, p in zip(end, out, strides, extent, spatial, begin)]
    extra = [i + p + e - ((o - 1) * s + k) for i, p, e, o, s, k in zip(spatial, begin, end, out, strides, extent)]
    geometry = dict(strides=strides, dilations=dilations, pads=begin + end)
    ones = b.const(np.ones([1, 1, *spatial]), like=x)
    kernel_ones = b.const(np.ones([1, 1, *kernel]), like=x)
    valid = b.op("Conv", ones, kernel_ones, **geometry)
    weights = b.op("Div", b.op("AveragePool", ones, **n.attrs), valid)
    per_plane = b.op("Reshape", b.op("Mul", dy[0], weights), b.ints([-1, 1, *out]))
    dx = b.op("ConvTranspose", per_plane, kernel_ones, output_padding=extra, **geometry)
    return [b.reshape_like(dx, x)]


def _average_pool_runtime(b, n, g: str, kernel, strides, dilations, begin, end) -> str:
    """average_pool with the input and output sizes from Shape: the valid counts come from ones padded by
    (begin, end + stride − 1), which covers ceil_mode's last windows, cut to the output's size."""
    x, y = n.inputs[0], n.outputs[0]
    k = len(kernel)
    if begin is None:
        begin, end = runtime_pads(b, n, x, kernel, strides, dilations)
    else:
        begin, end = b.ints(begin), b.ints(end)
    out = spatial_sizes(b, y)
    zeros = b.ints([0, 0])
    one = numpy_helper.from_array(np.ones(1, b.dtype(x)))
    ones = b.op("ConstantOfShape", b.op("Concat", b.ints([1, 1]), spatial_sizes(b, x), axis=0), value=one)
    kernel_ones = b.const(np.ones([1, 1, *kernel]), like=x)
    padded = b.op("Pad", ones, b.op("Concat", zeros, begin, zeros, b.op("Add", end, b.ints([s - 1 for s in strides])), axis=0))
    geometry = dict(strides=strides, dilations=dilations)
    valid = b.op("Slice", b.op("Conv", padded, kernel_ones, **geometry), b.ints([0] * k), out, b.ints(range(2, k + 2)))
    weights = b.op("Div", b.op("AveragePool", ones, **n.attrs), valid)
    per_plane = b.op("Reshape", b.op("Mul", g, weights), b.op("Concat", b.ints([-1, 1]), out, axis=0))
    dx = transposed_to_input(b, b.op("ConvTranspose", per_plane, kernel_ones, **geometry), x, strides, begin)
    return b.reshape_like(dx, x)
