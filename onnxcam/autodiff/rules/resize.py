"""Resize: separable, through interpolation matrices probed from the node itself."""

from __future__ import annotations

import numpy as np

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
    if 0 in axes and not _unchanged(b, n, 0, axes.index(0), scales, sizes):
        raise UnsupportedOpError(n.op, n.name, "resizing the batch axis")
    g = dy[0]
    for j, a in enumerate(axes):
        if a != 0 and not _unchanged(b, n, a, j, scales, sizes):
            g = _contract(b, g, _matrix(b, n, a, j, axes, scales, sizes), a, rank)
    return [g]


def _target(b, n) -> tuple[str | None, str | None]:
    """(scales, sizes): the one the node uses (opset 11-12 pass an empty scales tensor next to sizes)."""
    scales, value = n.input(2), b.value(n.input(2))
    count = value.size if value is not None else (b.static_shape(scales) or (1,))[0]
    return (scales, None) if scales and count else (None, n.input(3))


def _unchanged(b, n, a: int, j: int, scales: str | None, sizes: str | None) -> bool:
    """Whether axis a (entry j of scales/sizes) is provably left as is: factor 1 and no crop or half-pixel shift."""
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
    target = b.value(sizes)
    return target is not None and target[j] == b.shape(n.inputs[0])[a]


def _matrix(b, n, a: int, j: int, axes: list[int], scales: str | None, sizes: str | None) -> str:
    """P_a as [n_in, n_out]: the node run on eye(n_in) laid along axes 0 and a (size 1 and factor 1 elsewhere)."""
    x = n.inputs[0]
    size = b.shape(x)[a]
    if not isinstance(size, int):
        raise UnsupportedOpError(n.op, n.name, f"size of axis {a} unknown after shape inference")
    shape = [1] * b.rank(x)
    shape[0] = shape[a] = size
    probe = b.const(np.eye(size).reshape(shape), like=x)
    keep = b.const(np.arange(len(axes)) == j)
    if scales:
        scales = b.op("Where", keep, scales, b.const(1, like=scales))
    else:
        sizes = b.op("Where", keep, sizes, b.ints([shape[k] for k in axes]))
    out = b.op("Resize", probe, n.input(1), scales, sizes, **n.attrs)
    return b.op("Reshape", out, b.ints([size, -1]))


def _contract(b, g: str, p: str, a: int, rank: int) -> str:
    """Σ_o g[…, o, …]·p[i, o] along axis a, as one MatMul."""
    if a == rank - 1:
        return b.op("MatMul", g, b.op("Transpose", p, perm=[1, 0]))
    if a == rank - 2:
        return b.op("MatMul", p, g)
    perm = list(range(rank))
    perm[a], perm[rank - 2] = rank - 2, a
    return b.op("Transpose", b.op("MatMul", p, b.op("Transpose", g, perm=perm)), perm=perm)
