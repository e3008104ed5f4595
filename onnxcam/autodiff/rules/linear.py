"""Linear ops with weights: only data gradients are built (weights are constants for an explainer)."""

from __future__ import annotations

from ...errors import UnsupportedOpError
from . import rule


def conv_geometry(b, n, x: str, kernel: list[int]) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Strides, dilations and explicit begin/end pads of a Conv-like node (auto_pad resolved), plus input sizes."""
    shape = b.shape(x)
    spatial = list(shape[2:]) if shape is not None else []
    if len(spatial) != len(kernel) or not all(isinstance(d, int) for d in spatial):
        raise UnsupportedOpError(n.op, n.name, "spatial input size unknown after shape inference")
    k = len(kernel)
    strides = list(n.attrs.get("strides", [1] * k))
    dilations = list(n.attrs.get("dilations", [1] * k))
    pads = list(n.attrs.get("pads", [0] * 2 * k))
    begin, end = pads[:k], pads[k:]
    auto = n.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(k):
            total = max((-(-spatial[i] // strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i], 0)
            small, large = total // 2, total - total // 2
            begin[i], end[i] = (small, large) if auto == "SAME_UPPER" else (large, small)
    elif auto == "VALID":
        begin, end = [0] * k, [0] * k
    return strides, dilations, begin, end, spatial


@rule("Conv")
def conv(b, n, dy):
    """dX = ConvTranspose(dY, W) with explicit pads and output_padding (never output_shape: ORT misplaces pads)."""
    x, w = n.inputs[0], n.inputs[1]
    if n.needs[1] or (n.input(2) and n.needs[2]):
        raise UnsupportedOpError(n.op, n.name, "gradients for weights computed at run time are not built")
    kernel = list(n.attrs.get("kernel_shape") or b.shape(w)[2:])
    strides, dilations, begin, end, spatial = conv_geometry(b, n, x, kernel)
    extra = [(s + p + q - ((k - 1) * d + 1)) % st for s, p, q, k, d, st in zip(spatial, begin, end, kernel, dilations, strides)]
    dx = b.op(
        "ConvTranspose", dy[0], w, group=n.attrs.get("group", 1), strides=strides, dilations=dilations,
        kernel_shape=kernel, pads=begin + end, output_padding=extra,
    )
    return [dx]


@rule("ConvTranspose")
def conv_transpose(b, n, dy):
    """The adjoint of ConvTranspose is Conv with the same weights, strides, dilations and pads."""
    x, w = n.inputs[0], n.inputs[1]
    if n.needs[1] or (n.input(2) and n.needs[2]):
        raise UnsupportedOpError(n.op, n.name, "gradients for weights computed at run time are not built")
    kernel = list(n.attrs.get("kernel_shape") or b.shape(w)[2:])
    k = len(kernel)
    strides = list(n.attrs.get("strides", [1] * k))
    dilations = list(n.attrs.get("dilations", [1] * k))
    pads = list(n.attrs.get("pads", [0] * 2 * k))
    out_shape = b.shape(n.outputs[0])
    if n.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or "output_shape" in n.attrs:
        spatial = (b.shape(x) or [None] * (k + 2))[2:]
        out = list(n.attrs.get("output_shape") or (out_shape or [None] * (k + 2))[2:])
        if not all(isinstance(v, int) for v in [*spatial, *out]):
            raise UnsupportedOpError(n.op, n.name, "output size unknown after shape inference")
        padding = list(n.attrs.get("output_padding", [0] * k))
        for i in range(k):
            total = strides[i] * (spatial[i] - 1) + padding[i] + (kernel[i] - 1) * dilations[i] + 1 - out[i]
            small, large = total // 2, total - total // 2
            lower = n.attrs.get("auto_pad") == "SAME_LOWER"
            pads[i], pads[i + k] = (large, small) if lower else (small, large)
    dx = b.op(
        "Conv", dy[0], w, group=n.attrs.get("group", 1), strides=strides, dilations=dilations,
        kernel_shape=kernel, pads=pads,
    )
    return [dx]


@rule("Gemm")
def gemm(b, n, dy):
    """Y = alpha·op(A)·op(B) + beta·C."""
    a, w, c = n.input(0), n.input(1), n.input(2)
    g, alpha = dy[0], n.attrs.get("alpha", 1.0)
    ta, tb = n.attrs.get("transA", 0), n.attrs.get("transB", 0)
    da = db = dc = None
    if n.needs[0]:
        da = b.op("Gemm", g, w, alpha=alpha, transB=1 - tb) if not ta else b.op("Gemm", w, g, alpha=alpha, transA=tb, transB=1)
    if n.needs[1]:
        db = b.op("Gemm", a, g, alpha=alpha, transA=1 - ta) if not tb else b.op("Gemm", g, a, alpha=alpha, transA=1, transB=ta)
    if c and n.needs[2]:
        scaled = b.op("Mul", g, b.const(n.attrs.get("beta", 1.0), like=c))
        dc = b.unbroadcast(scaled, c, n.outputs[0])
    return [da, db, dc]


def _swap_last(b, t: str) -> str:
    r = b.rank(t)
    return b.op("Transpose", t, perm=[*range(r - 2), r - 1, r - 2])


@rule("MatMul")
def matmul(b, n, dy):
    """dA = dY·Bᵀ, dB = Aᵀ·dY, each summed over the batch axes it was broadcast along."""
    (a, w), y, g = n.inputs, n.outputs[0], dy[0]
    if b.rank(a) < 2 or b.rank(w) < 2:
        raise UnsupportedOpError(n.op, n.name, "1-D MatMul operands")
    da = db = None
    if n.needs[0]:
        da = _batch_unbroadcast(b, b.op("MatMul", g, _swap_last(b, w)), a, y)
    if n.needs[1]:
        db = _batch_unbroadcast(b, b.op("MatMul", _swap_last(b, a), g), w, y)
    return [da, db]


def _batch_unbroadcast(b, d: str, x: str, y: str) -> str:
    sx, sy = b.shape(x), b.shape(y)
    if sx is not None and sy is not None and len(sx) == len(sy) and sx[:-2] == sy[:-2]:
        return d
    return b._unbroadcast_dynamic(d, x)
