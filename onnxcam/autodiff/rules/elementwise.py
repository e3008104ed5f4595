"""Broadcasting binary and n-ary ops: each gradient is summed back to its input's shape."""

from __future__ import annotations

from . import rule


@rule("Add")
def add(b, n, dy):
    y = n.outputs[0]
    return [b.unbroadcast(dy[0], x, y) if need else None for x, need in zip(n.inputs, n.needs)]


@rule("Sub")
def sub(b, n, dy):
    (x1, x2), y, g = n.inputs, n.outputs[0], dy[0]
    return [
        b.unbroadcast(g, x1, y) if n.needs[0] else None,
        b.unbroadcast(b.op("Neg", g), x2, y) if n.needs[1] else None,
    ]


@rule("Mul")
def mul(b, n, dy):
    (x1, x2), y, g = n.inputs, n.outputs[0], dy[0]
    return [
        b.unbroadcast(b.op("Mul", g, x2), x1, y) if n.needs[0] else None,
        b.unbroadcast(b.op("Mul", g, x1), x2, y) if n.needs[1] else None,
    ]


@rule("Div")
def div(b, n, dy):
    (x1, x2), y, g = n.inputs, n.outputs[0], dy[0]
    return [
        b.unbroadcast(b.op("Div", g, x2), x1, y) if n.needs[0] else None,
        b.unbroadcast(b.op("Neg", b.op("Div", b.op("Mul", g, y), x2)), x2, y) if n.needs[1] else None,
    ]


@rule("Pow")
def pow_(b, n, dy):
    (x, p), y, g = n.inputs, n.outputs[0], dy[0]
    dx = None
    if n.needs[0]:
        exponent = p if b.dtype(p) == b.dtype(x) else b.op("CastLike", p, x)  # integer exponents
        slope = b.op("Mul", exponent, b.op("Pow", x, b.op("Sub", exponent, b.const(1, like=x))))
        dx = b.unbroadcast(b.op("Mul", g, slope), x, y)
    dp = b.unbroadcast(b.op("Mul", g, b.op("Mul", y, b.op("Log", x))), p, y) if n.needs[1] else None
    return [dx, dp]


@rule("Sum")
def sum_(b, n, dy):
    return add(b, n, dy)


@rule("Mean")
def mean(b, n, dy):
    g = b.op("Div", dy[0], b.const(len(n.inputs), like=n.outputs[0]))
    return [b.unbroadcast(g, x, n.outputs[0]) if need else None for x, need in zip(n.inputs, n.needs)]


@rule("Max", "Min")
def max_min(b, n, dy):
    """The gradient goes to the inputs equal to the result, split evenly on ties (torch.maximum)."""
    y, g = n.outputs[0], dy[0]
    hits = [b.op("Cast", b.op("Equal", x, y), to=b.types[y]) for x in n.inputs]
    share = b.op("Div", g, b.add_all(hits))
    return [b.unbroadcast(b.op("Mul", share, h), x, y) if need else None for x, h, need in zip(n.inputs, hits, n.needs)]


@rule("Where")
def where(b, n, dy):
    (cond, x1, x2), y, g = n.inputs, n.outputs[0], dy[0]
    zero = b.const(0, like=y)
    return [
        None,
        b.unbroadcast(b.op("Where", cond, g, zero), x1, y) if n.needs[1] else None,
        b.unbroadcast(b.op("Where", cond, zero, g), x2, y) if n.needs[2] else None,
    ]
