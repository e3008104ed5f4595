"""Data-movement ops. Most are differentiated by one trick: run the op on a grid of flat indices of X,
which says where every output element came from, then scatter-add dY back to those positions."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ...errors import UnsupportedOpError
from . import rule


def scatter_back(b, n, g, dump: bool = False) -> str:
    """dX for an op that only moves or copies elements of its first input (Gather, Slice, Pad, Tile...).

    With `dump`, the op's fill value (Pad's constant) becomes index `size`: a slot dropped at the end."""
    x = n.inputs[0]
    size = b.op("Size", x)
    static = b.static_shape(x)
    if static is not None:
        grid = b.op("Reshape", b.ints(np.arange(int(np.prod(static)))), b.ints(static))
    else:
        flat = b.op("Range", b.const(0, dtype=np.int64), size, b.const(1, dtype=np.int64))
        grid = b.op("Reshape", flat, b.op("Shape", x))
    inputs = [grid, *n.inputs[1:]]
    if dump:
        inputs += [None] * (3 - len(inputs))
        inputs[2] = size
    source = b.op(n.op, *inputs, **n.attrs)
    length = b.op("Add", size, b.const(1, dtype=np.int64)) if dump else size
    zero = numpy_helper.from_array(np.zeros(1, b.dtype(x)))
    zeros = b.op("ConstantOfShape", b.op("Reshape", length, b.ints([1])), value=zero)
    flat_src, flat_g = b.op("Reshape", source, b.ints([-1])), b.op("Reshape", g, b.ints([-1]))
    summed = b.op("ScatterElements", zeros, flat_src, flat_g, axis=0, reduction="add")
    if dump:
        summed = b.op("Slice", summed, b.ints([0]), b.op("Reshape", size, b.ints([1])))
    return b.reshape_like(summed, x)


@rule("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(b, n, dy):
    return [b.reshape_like(dy[0], n.inputs[0])]


@rule("Transpose")
def transpose(b, n, dy):
    perm = n.attrs.get("perm") or list(range(b.rank(n.inputs[0])))[::-1]
    return [b.op("Transpose", dy[0], perm=[int(i) for i in np.argsort(perm)])]


@rule("Expand")
def expand(b, n, dy):
    return [b.unbroadcast(dy[0], n.inputs[0], n.outputs[0])]


@rule("Concat")
def concat(b, n, dy):
    axis = n.attrs["axis"]
    static = [b.shape(x)[axis] if b.shape(x) is not None else None for x in n.inputs]
    if all(isinstance(s, int) for s in static):
        split = b.ints(static)
    else:
        end = b.ints([axis + 1 if axis != -1 else 2**62])
        split = b.op("Concat", *(b.op("Slice", b.op("Shape", x), b.ints([axis]), end) for x in n.inputs), axis=0)
    parts = b.op("Split", dy[0], split, axis=axis, outputs=len(n.inputs))
    return parts if len(n.inputs) > 1 else [parts]


@rule("Split")
def split(b, n, dy):
    axis = n.attrs.get("axis", 0)
    parts = [g if g is not None else b.zeros_like(o) for g, o in zip(dy, n.outputs)]
    return [b.op("Concat", *parts, axis=axis)]


@rule("Slice", "Gather", "GatherElements", "GatherND", "Tile", "Compress", "ReverseSequence")
def moved(b, n, dy):
    return [scatter_back(b, n, dy[0])]


@rule("SpaceToDepth")
def space_to_depth(b, n, dy):
    """The inverse permutation is DepthToSpace in DCR mode (no int64 kernels for the index-grid trick)."""
    return [b.op("DepthToSpace", dy[0], blocksize=n.attrs["blocksize"], mode="DCR")]


@rule("DepthToSpace")
def depth_to_space(b, n, dy):
    """DCR is undone by SpaceToDepth; CRD also needs its channel order (c, i, j) from SpaceToDepth's (i, j, c)."""
    x, size = n.inputs[0], n.attrs["blocksize"]
    g = b.op("SpaceToDepth", dy[0], blocksize=size)
    if n.attrs.get("mode", "DCR") == "DCR":
        return [g]
    channels = (b.shape(x) or [None, None])[1]
    if not isinstance(channels, int):
        raise UnsupportedOpError(n.op, n.name, "channel count unknown after shape inference")
    blocks = b.op("Reshape", g, b.ints([0, size * size, channels // (size * size), -1]))
    return [b.reshape_like(b.op("Transpose", blocks, perm=[0, 2, 1, 3]), x)]


@rule("Pad")
def pad(b, n, dy):
    """Padding positions point at a dump slot (index = size); reflect/edge positions at their source.

    Constant mode with constant, non-negative pads is just a Slice of dY (much faster than the scatter)."""
    pads, axes = b.value(n.input(1)), b.value(n.input(3))
    constant = n.attrs.get("mode", "constant") == "constant"
    if constant and pads is not None and (pads >= 0).all() and (axes is not None or not n.input(3)):
        rank = b.rank(n.inputs[0])
        axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
        begin, end = pads[: len(axes)], pads[len(axes) :]
        ends = [-int(e) if e > 0 else 2**62 for e in end]
        return [b.op("Slice", dy[0], b.ints(begin), b.ints(ends), b.ints(axes))]
    if constant:
        return [scatter_back(b, n, dy[0], dump=True)]
    return [scatter_back(b, n, dy[0])]


@rule("ScatterND")
def scatter_nd(b, n, dy):
    """Overwritten positions of data get no gradient, unless reduction="add" keeps them."""
    return _scatter(b, n, dy, "ScatterND", "GatherND")


@rule("ScatterElements")
def scatter_elements(b, n, dy):
    """As ScatterND, along `axis`."""
    return _scatter(b, n, dy, "ScatterElements", "GatherElements", axis=n.attrs.get("axis", 0))


def _scatter(b, n, dy, scatter: str, gather: str, **attrs):
    reduction = n.attrs.get("reduction", "none")
    if reduction not in ("none", "add"):
        raise UnsupportedOpError(n.op, n.name, f"reduction={reduction!r}")
    _, indices, updates = n.inputs
    g = dy[0]
    ddata = None
    if n.needs[0]:
        ddata = g if reduction == "add" else b.op(scatter, g, indices, b.zeros_like(updates), **attrs)
    return [ddata, None, b.op(gather, g, indices, **attrs) if n.needs[2] else None]


@rule("TopK")
def top_k(b, n, dy):
    """The values' gradient goes back to where they were taken from (the Indices output; distinct per slice)."""
    x = n.inputs[0]
    return [b.op("ScatterElements", b.zeros_like(x), n.outputs[1], dy[0], axis=n.attrs.get("axis", -1))]


@rule("Trilu")
def trilu(b, n, dy):
    """A mask: the same Trilu keeps dY where it kept X."""
    return [b.op("Trilu", dy[0], n.input(1), upper=n.attrs.get("upper", 1))]


@rule("CenterCropPad")
def center_crop_pad(b, n, dy):
    """Cropping and zero-padding around the center are each other's adjoints: the same op back to X's sizes."""
    x, axes = n.inputs[0], n.attrs.get("axes")
    sizes = b.op("Shape", x) if axes is None else b.op("Gather", b.op("Shape", x), b.ints(axes))
    return [b.op("CenterCropPad", dy[0], sizes, axes=axes)]
