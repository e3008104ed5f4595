"""Resize: separable, through interpolation matrices probed from the node itself."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ...errors import UnsupportedOpError
from . import rule


@rule("Resize")
def resize(b, n, dy):
    """dX = dY contracted, on each resized axis a, with P_a[i, o] = ∂Y[…o…]/∂X[…i…]: the output of this very
    Resize (same attributes, same scales or sizes on axis a) run on an identity laid along axes 0 and a."""
    x = n.inputs[0]
    scales, sizes = _target(b, n)
    rank = b.rank(x)
    axes = [a % rank for a in n.attrs.get("axes", range(rank))]
    if sizes and n.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise UnsupportedOpError(n.op, n.name, "keep_aspect_ratio_policy other than stretch")
    if 0 in axes and not _unchanged(b, n, 0, axes.index(0), scales, sizes, batch=True):
        raise UnsupportedOpError(n.op, n.name, "resizing the batch axis")
    g = dy[0]
    for j, a in enumerate(axes):
        if a != 0 and not _unchanged(b, n, a, j, scales, sizes):
            g = _contract(b, g, _matrix(b, n, a, j, axes, scales, sizes), a, rank)
    if sizes and b.value(sizes) is None:  # the batch was assumed kept: this Reshape fails at run time if it was not
        g = b.reshape_like(g, x)
    return [g]


def _target(b, n) -> tuple[str | None, str | None]:
    """(scales, sizes): the one the node uses (opset 11-12 pass an empty scales tensor next to sizes)."""
    scales, value = n.input(2), b.value(n.input(2))
    count = value.size if value is not None else (b.static_shape(scales) or (1,))[0]
    return (scales, None) if scales and count else (None, n.input(3))


def _unchanged(b, n, a: int, j: int, scales: str | None, sizes: str | None, batch: bool = False) -> bool:
    """Whether axis a (entry j of scales/sizes) is provably left as is: factor 1 and no crop or half-pixel shift.
    `batch`: sizes computed at run time (Concat(Shape(X)[:2], …) in segmentation heads) count as keeping it."""
    mode = n.attrs.get("coordinate_transformation_mode", "half_pixel")
    rounds_up = n.attrs.get("nearest_mode", "round_prefer_floor") in ("round_prefer_ceil", "ceil")
    if mode == "tf_half_pixel_for_nn" and n.attrs.get("mode") == "nearest" and rounds_up:  # index + ½ rounded up
        return False
    if mode == "tf_crop_and_resize":
        roi = b.value(n.input(1))
        half = len(roi) // 2 if roi is not None else 0
        if roi is None or roi[j] != 0 or roi[half + j] != 1:
            return False
    if scales:
        factors = b.value(scales)
        return factors is not None and factors[j] == 1
    target, before, after = b.value(sizes), _dim(b, n.inputs[0], a), _dim(b, n.outputs[0], a)
    if target is None:  # sizes computed at run time: shape inference may still show the axis unchanged
        return batch or (before is not None and before == after)
    return target[j] == before


def _dim(b, x: str, a: int):
    shape = b.shape(x)
    return shape[a] if shape is not None and a < len(shape) else None


def _matrix(b, n, a: int, j: int, axes: list[int], scales: str | None, sizes: str | None) -> str:
    """P_a as [n_in, n_out]: the node run on eye(n_in) laid along axes 0 and a (size 1 and factor 1 elsewhere).
    An axis size unknown until run time gives a probe built at run time (EyeLike of Shape(X)[a] × Shape(X)[a])."""
    x = n.inputs[0]
    size, rank = _dim(b, x, a), b.rank(x)
    if isinstance(size, int):
        shape = [1] * rank
        shape[0] = shape[a] = size
        probe, ones = b.const(np.eye(size).reshape(shape), like=x), b.ints([shape[k] for k in axes])
        length = b.ints([size])
    else:
        length = b.op("Slice", b.op("Shape", x), b.ints([a]), b.ints([a + 1]))
        zero = numpy_helper.from_array(np.zeros(1, b.dtype(x)))
        square = b.op("EyeLike", b.op("ConstantOfShape", b.op("Concat", length, length, axis=0), value=zero))
        shape = b.op("Concat", *[length if k in (0, a) else b.ints([1]) for k in range(rank)], axis=0)
        probe = b.op("Reshape", square, shape)
        ones = b.op("Concat", *[length if k in (0, a) else b.ints([1]) for k in axes], axis=0)
    keep = b.const(np.arange(len(axes)) == j)
    if scales:
        scales = b.op("Where", keep, scales, b.const(1, like=scales))
    else:
        sizes = b.op("Where", keep, sizes, ones)
    out = b.op("Resize", probe, n.input(1), scales, sizes, **n.attrs)
    return b.op("Reshape", out, b.op("Concat", length, b.ints([-1]), axis=0))


def _contract(b, g: str, p: str, a: int, rank: int) -> str:
    """Σ_o g[…, o, …]·p[i, o] along axis a, as one MatMul."""
    if a == rank - 1:
        return b.op("MatMul", g, b.op("Transpose", p, perm=[1, 0]))
    if a == rank - 2:
        return b.op("MatMul", p, g)
    perm = list(range(rank))
    perm[a], perm[rank - 2] = rank - 2, a
    return b.op("Transpose", b.op("MatMul", p, b.op("Transpose", g, perm=perm)), perm=perm)
