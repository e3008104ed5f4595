"""Linear ops with weights: only data gradients are built (weights are constants for an explainer)."""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedOpError
from . import rule


def conv_geometry(b, n, x: str, kernel: list[int]) -> tuple[list[int], list[int], list | None, list | None, list]:
    """Strides, dilations and explicit begin/end pads of a Conv-like node (auto_pad resolved), plus input sizes.

    Sizes that shape inference lost (MobileViT-style unfold reshapes) are None; so are the pads when they depend on
    them (auto_pad SAME with a stride > 1): rules then take them from `runtime_pads` and Shape at run time."""
    k = len(kernel)
    shape = b.shape(x)
    spatial = list(shape[2:]) if shape is not None and len(shape) == k + 2 else [None] * k
    spatial = [d if isinstance(d, int) else None for d in spatial]
    strides = list(n.attrs.get("strides", [1] * k))
    dilations = list(n.attrs.get("dilations", [1] * k))
    pads = list(n.attrs.get("pads", [0] * 2 * k))
    begin, end = pads[:k], pads[k:]
    auto = n.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if any(d is None and s != 1 for d, s in zip(spatial, strides)):
            return strides, dilations, None, None, spatial
        for i in range(k):  # stride 1: total = extent − 1 whatever the size
            extent = (kernel[i] - 1) * dilations[i] + 1
            size = spatial[i] if spatial[i] is not None else 1
            total = max((-(-size // strides[i]) - 1) * strides[i] + extent - size, 0)
            small, large = total // 2, total - total // 2
            begin[i], end[i] = (small, large) if auto == "SAME_UPPER" else (large, small)
    elif auto == "VALID":
        begin, end = [0] * k, [0] * k
    return strides, dilations, begin, end, spatial


def spatial_sizes(b, x: str) -> str:
    """Shape(X)[2:] at run time (int64)."""
    return b.op("Slice", b.op("Shape", x), b.ints([2]), b.ints([2**62]))


def runtime_pads(b, n, x: str, kernel: list[int], strides: list[int], dilations: list[int]) -> tuple[str, str]:
    """auto_pad SAME's begin and end pads as int64 tensors: total = max((⌈n/s⌉ − 1)·s + (k − 1)·d + 1 − n, 0)."""
    size, step = spatial_sizes(b, x), b.ints(strides)
    extent = b.ints([(k - 1) * d + 1 for k, d in zip(kernel, dilations)])
    steps = b.op("Div", b.op("Add", size, b.op("Sub", step, b.ints([1]))), step)
    span = b.op("Add", b.op("Mul", b.op("Sub", steps, b.ints([1])), step), extent)
    total = b.op("Max", b.op("Sub", span, size), b.ints([0]))
    half = b.op("Div", total, b.ints([2]))
    rest = b.op("Sub", total, half)
    return (half, rest) if n.attrs["auto_pad"] == "SAME_UPPER" else (rest, half)


def transposed_to_input(b, full: str, x: str, strides: list[int], begin) -> str:
    """The window sums of a ConvTranspose without pads (positions −begin… of X's padded frame), cut to X's sizes
    at run time: a Pad of stride − 1 zeros covers the positions no window reaches, then Slice [begin, begin + n)."""
    k = len(strides)
    if max(strides) > 1:
        full = b.op("Pad", full, b.ints([0] * (k + 2) + [0, 0] + [s - 1 for s in strides]))
    begin = b.ints(begin) if isinstance(begin, list) else begin
    return b.op("Slice", full, begin, b.op("Add", begin, spatial_sizes(b, x)), b.ints(range(2, k + 2)))


@rule("Conv")
def conv(b, n, dy):
    """dX = ConvTranspose(dY, W) with explicit pads and output_padding (never output_shape: ORT misplaces pads).

    Stride 1 with constant W: the same thing as a Conv with W flipped and its in/out channels swapped per group,
    padded by (k − 1)·d − p; ONNX Runtime's CPU Conv is 1.4–1.8× faster than its ConvTranspose. Spatial sizes
    unknown until run time: ConvTranspose without pads, cut to X's sizes by Shape (transposed_to_input)."""
    x, w = n.inputs[0], n.inputs[1]
    if n.needs[1] or (n.input(2) and n.needs[2]):
        raise UnsupportedOpError(n.op, n.name, "gradients for weights computed at run time are not built")
    kernel = list(n.attrs.get("kernel_shape") or b.shape(w)[2:])
    strides, dilations, begin, end, spatial = conv_geometry(b, n, x, kernel)
    group = n.attrs.get("group", 1)
    full = [(k - 1) * d for k, d in zip(kernel, dilations)]
    if begin is not None:
        pads = [f - p for f, p in zip(full, begin)] + [f - p for f, p in zip(full, end)]
        if b.value(w) is not None and all(s == 1 for s in strides) and min(pads) >= 0:
            return [b.op("Conv", dy[0], _flipped(b, w, group), group=group, dilations=dilations, kernel_shape=kernel,
                         pads=pads)]
    geometry = dict(group=group, strides=strides, dilations=dilations, kernel_shape=kernel)
    if None in spatial:
        begin = begin if begin is not None else runtime_pads(b, n, x, kernel, strides, dilations)[0]
        return [transposed_to_input(b, b.op("ConvTranspose", dy[0], w, **geometry), x, strides, begin)]
    sizes = zip(spatial, begin, end, kernel, dilations, strides)
    extra = [(s + p + q - ((k - 1) * d + 1)) % st for s, p, q, k, d, st in sizes]
    dx = b.op("ConvTranspose", dy[0], w, pads=begin + end, output_padding=extra, **geometry)
    if b.blocked(x):  # ORT has no blocked ConvTranspose: hand the sums downstream a blocked tensor
        channels = b.shape(x)[1]
        dx = b.op("Conv", dx, b.const(np.ones((channels, 1, 1, 1)), like=x), group=channels, kernel_shape=[1, 1])
    return [dx]


def _flipped(b, w: str, group: int) -> str:
    """W with in/out channels swapped per group and the kernel flipped, as ops on the shared initializer.

    Ops, not a new constant, so the weights are stored once; ONNX Runtime folds them when the session loads."""
    out, per_group, *kernel = b.value(w).shape
    k = len(kernel)
    grouped = b.op("Reshape", w, b.ints([group, out // group, per_group, *kernel]))
    swapped = b.op("Transpose", grouped, perm=[0, 2, 1, *range(3, 3 + k)])
    merged = b.op("Reshape", swapped, b.ints([group * per_group, out // group, *kernel]))
    lowest = np.iinfo(np.int64).min
    return b.op("Slice", merged, b.ints([-1] * k), b.ints([lowest] * k), b.ints(range(2, 2 + k)), b.ints([-1] * k))


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
    geometry = dict(group=n.attrs.get("group", 1), strides=strides, dilations=dilations, kernel_shape=kernel)
    if n.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or "output_shape" in n.attrs:
        spatial = (b.shape(x) or [None] * (k + 2))[2:]
        out = list(n.attrs.get("output_shape") or (out_shape or [None] * (k + 2))[2:])
        padding = list(n.attrs.get("output_padding", [0] * k))
        upper = n.attrs.get("auto_pad") == "SAME_UPPER"  # ORT pads output_shape without auto_pad as SAME_LOWER
        if not all(isinstance(v, int) for v in [*spatial, *out]):
            return [b.op("Conv", _runtime_padded(b, n, dy[0], kernel, padding, upper), w, **geometry)]
        for i in range(k):
            total = max(strides[i] * (spatial[i] - 1) + padding[i] + (kernel[i] - 1) * dilations[i] + 1 - out[i], 0)
            small, large = total // 2, total - total // 2
            pads[i], pads[i + k] = (small, large) if upper else (large, small)
    return [b.op("Conv", dy[0], w, pads=pads, **geometry)]


def _runtime_padded(b, n, g: str, kernel: list[int], padding: list[int], upper: bool) -> str:
    """dY padded by the pads that auto_pad or output_shape chose, computed from Shape at run time:
    total = max(s·(n − 1) + output_padding + (k − 1)·d + 1 − out, 0)."""
    k = len(kernel)
    strides, dilations = n.attrs.get("strides", [1] * k), n.attrs.get("dilations", [1] * k)
    out = b.ints(n.attrs["output_shape"]) if "output_shape" in n.attrs else spatial_sizes(b, n.outputs[0])
    span = [p + (kk - 1) * d + 1 - s for s, p, kk, d in zip(strides, padding, kernel, dilations)]
    grown = b.op("Add", b.op("Mul", spatial_sizes(b, n.inputs[0]), b.ints(strides)), b.ints(span))
    total = b.op("Max", b.op("Sub", grown, out), b.ints([0]))
    small = b.op("Div", total, b.ints([2]))
    large = b.op("Sub", total, small)
    begin, end = (small, large) if upper else (large, small)
    zeros = b.ints([0, 0])
    return b.op("Pad", g, b.op("Concat", zeros, begin, zeros, end, axis=0))


@rule("Gemm")
def gemm(b, n, dy):
    """Y = alpha·op(A)·op(B) + beta·C."""
    a, w, c = n.input(0), n.input(1), n.input(2)
    g, alpha = dy[0], n.attrs.get("alpha", 1.0)
    ta, tb = int(n.attrs.get("transA", 0) != 0), int(n.attrs.get("transB", 0) != 0)  # any non-zero value transposes
    da = db = dc = None
    if n.needs[0] and ta:  # dA = alpha·dY·op(B)ᵀ, transposed when transA
        da = b.op("Gemm", w, g, alpha=alpha, transA=tb, transB=1)
    elif n.needs[0]:
        da = b.op("Gemm", g, w, alpha=alpha, transB=1 - tb)
    if n.needs[1] and tb:  # dB = alpha·op(A)ᵀ·dY, transposed when transB
        db = b.op("Gemm", g, a, alpha=alpha, transA=1, transB=ta)
    elif n.needs[1]:
        db = b.op("Gemm", a, g, alpha=alpha, transA=1 - ta)
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


def _einsum_terms(equation: str) -> tuple[list[str], str]:
    """Operand and output subscripts, "..." written as "." (implicit output: ellipsis, then letters used once)."""
    lhs, arrow, out = equation.replace(" ", "").replace("...", ".").partition("->")
    terms = lhs.split(",")
    if not arrow:
        once = sorted(c for c in set(lhs) if c.isalpha() and lhs.count(c) == 1)
        out = ("." if "." in lhs else "") + "".join(once)
    return terms, out


@rule("Einsum")
def einsum(b, n, dy):
    """dX_i = Einsum(dY, other operands -> subscripts of X_i); indices only X_i has are broadcast back by Expand."""
    terms, out = _einsum_terms(n.attrs["equation"])
    if any(len(set(t)) != len(t) for t in [*terms, out]):
        raise UnsupportedOpError(n.op, n.name, f"repeated subscripts in {n.attrs['equation']!r}")
    grads = []
    for i, (x, term) in enumerate(zip(n.inputs, terms)):
        if not n.needs[i]:
            grads.append(None)
            continue
        others = [j for j in range(len(terms)) if j != i]
        seen = set(out).union(*(terms[j] for j in others))
        kept = "".join(c for c in term if c in seen)
        summed = "." if "." in out and "." not in term else ""  # ORT wants "..." in the output: sum it after
        equation = ",".join([out, *(terms[j] for j in others)]) + "->" + summed + kept
        dx = b.op("Einsum", dy[0], *(n.inputs[j] for j in others), equation=equation.replace(".", "..."))
        if summed:
            dx = b.reduce("ReduceSum", dx, range(b.rank(n.outputs[0]) - len(out) + 1), keepdims=0)
        if kept != term:
            dx = b.op("Expand", b.op("Unsqueeze", dx, b.ints(_term_axes(b, x, term, set(term) - seen))), b.shape_of(x))
        grads.append(_ellipsis_unbroadcast(b, dx, x, term, out, n.outputs[0]))
    return grads


def _term_axes(b, x: str, term: str, letters: set[str]) -> list[int]:
    """Axes of X that the given subscripts label ("." stands for rank(X) - len(term) + 1 axes)."""
    width = b.rank(x) - len(term) + 1 if "." in term else 1
    axes, axis = [], 0
    for c in term:
        if c in letters:
            axes.append(axis)
        axis += width if c == "." else 1
    return axes


def _ellipsis_unbroadcast(b, dx: str, x: str, term: str, out: str, y: str) -> str:
    """Sum dx over the ellipsis axes that X broadcast against the other operands."""
    if "." not in term:
        return dx
    sx, sy = b.shape(x), b.shape(y)
    if sx is not None and sy is not None:
        width_x, width_y = len(sx) - len(term) + 1, len(sy) - len(out) + 1
        start_x, start_y = term.index("."), out.index(".")
        if sx[start_x:start_x + width_x] == sy[start_y:start_y + width_y] and None not in sx:
            return dx
    return b._unbroadcast_dynamic(dx, x)
