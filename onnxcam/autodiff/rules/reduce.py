"""Reductions: dY is unsqueezed back over the reduced axes and expanded to the input's shape."""

from __future__ import annotations

from ...errors import UnsupportedOpError
from . import rule


def reduced_axes(b, n) -> list[int] | None:
    """The axes a Reduce* node reduces (attribute or input form); None means all axes."""
    axes = n.attrs.get("axes")
    if axes is None and n.input(1):
        value = b.value(n.input(1))
        if value is None:
            raise UnsupportedOpError(n.op, n.name, "axes computed at run time")
        axes = value.tolist()
    if not axes:
        return [] if n.attrs.get("noop_with_empty_axes", 0) else None
    rank = b.rank(n.inputs[0])
    return sorted(int(a) % rank for a in axes)


def spread(b, n, g: str, axes: list[int] | None) -> str:
    """dY expanded back to X's shape (keepdims=0 axes re-inserted first)."""
    x = n.inputs[0]
    if axes is None:
        axes = list(range(b.rank(x)))
    if not n.attrs.get("keepdims", 1) and axes:
        g = b.op("Unsqueeze", g, b.ints(axes))
    return b.op("Expand", g, b.shape_of(x))


@rule("ReduceSum")
def reduce_sum(b, n, dy):
    return [spread(b, n, dy[0], reduced_axes(b, n))]


@rule("ReduceMean")
def reduce_mean(b, n, dy):
    x, y = n.inputs[0], n.outputs[0]
    count = b.op("Cast", b.op("Div", b.op("Size", x), b.op("Size", y)), to=b.types[x])
    return [spread(b, n, b.op("Div", dy[0], count), reduced_axes(b, n))]


@rule("ReduceMax", "ReduceMin")
def reduce_max(b, n, dy):
    """To the elements equal to the extreme, split evenly on ties (torch.amax)."""
    x, y = n.inputs[0], n.outputs[0]
    axes = reduced_axes(b, n)
    if axes == []:  # noop_with_empty_axes
        return [dy[0]]
    full_y = spread(b, n, y, axes)
    hits = b.op("Cast", b.op("Equal", x, full_y), to=b.types[x])
    count = b.reduce("ReduceSum", hits, axes if axes is not None else range(b.rank(x)), keepdims=1)
    share = b.op("Div", spread(b, n, dy[0], axes), count)
    return [b.op("Mul", share, hits)]


@rule("ReduceSumSquare")
def reduce_sum_square(b, n, dy):
    x = n.inputs[0]
    return [b.op("Mul", spread(b, n, dy[0], reduced_axes(b, n)), b.op("Mul", x, b.const(2, like=x)))]


@rule("ReduceL2")
def reduce_l2(b, n, dy):
    x, y = n.inputs[0], n.outputs[0]
    axes = reduced_axes(b, n)
    return [b.op("Mul", spread(b, n, b.op("Div", dy[0], y), axes), x)]


@rule("ReduceL1")
def reduce_l1(b, n, dy):
    return [b.op("Mul", spread(b, n, dy[0], reduced_axes(b, n)), b.op("Sign", n.inputs[0]))]


@rule("ReduceLogSumExp")
def reduce_log_sum_exp(b, n, dy):
    """dX = dY·exp(X − Y): the softmax over the reduced axes."""
    x, y = n.inputs[0], n.outputs[0]
    axes = reduced_axes(b, n)
    return [b.op("Mul", spread(b, n, dy[0], axes), b.op("Exp", b.op("Sub", x, spread(b, n, y, axes))))]


@rule("ReduceLogSum")
def reduce_log_sum(b, n, dy):
    """dX = dY / Σ X = dY·exp(−Y)."""
    y = n.outputs[0]
    return [spread(b, n, b.op("Div", dy[0], b.op("Exp", y)), reduced_axes(b, n))]


@rule("CumSum")
def cum_sum(b, n, dy):
    """The adjoint of a running sum is the running sum the other way, with the same exclusive flag."""
    reverse = 1 - n.attrs.get("reverse", 0)
    return [b.op("CumSum", dy[0], n.inputs[1], exclusive=n.attrs.get("exclusive", 0), reverse=reverse)]
