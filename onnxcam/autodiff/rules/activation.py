"""Unary elementwise ops: dX = dY · f'(X), with f' in the form torch.autograd uses (same kink conventions)."""

from __future__ import annotations

import math

import numpy as np

from . import rule


def _mask(b, cond, g, x):
    return b.op("Where", cond, g, b.const(0, like=x))


@rule("Relu")
def relu(b, n, dy):
    """Masks with Y > 0 (⇔ X > 0): reading the output leaves ORT free to fuse Conv+Relu."""
    y = n.outputs[0]
    if b.blocked(y):
        return [b.op("Mul", dy[0], _positive_mask(b, y))]
    return [_mask(b, b.op("Greater", y, b.const(0, like=y)), dy[0], y)]


def _positive_mask(b, y: str) -> str:
    """1[Y > 0] for Y ≥ 0 as Clip(Y·2¹²⁶, 0, 1), a per-channel 1×1 Conv that ORT fuses with its Clip.

    Exact for Y = 0 and every normal float32 Y > 0 (Y ≥ 2⁻¹²⁶ gives Y·2¹²⁶ ≥ 1); only subnormal Y would differ."""
    channels = b.shape(y)[1]
    scale = b.const(np.full((channels, 1, 1, 1), 2.0**126), like=y)
    return b.op("Clip", b.op("Conv", y, scale, group=channels, kernel_shape=[1, 1]), b.const(0, like=y),
                b.const(1, like=y))


def _scalar(b, name: str | None, attr) -> float | None:
    """A Clip bound known before run time (attribute or constant scalar input), else None."""
    value = b.value(name) if name else (None if attr is None else np.asarray(attr))
    return float(np.reshape(value, -1)[0]) if value is not None and np.size(value) == 1 else None


def _inside_mask(b, y: str, lo: float, hi: float) -> str:
    """1[lo < Y < hi] for Y = Clip(X, lo, hi) as Clip((Y − lo)·s, 0, 1) · Clip((hi − Y)·s', 0, 1), each a per-channel
    1×1 Conv that ORT fuses with its Clip, so the mask stays in the blocked layout (see _positive_mask).

    Y − lo and hi − Y are 0 or at least half an ulp of the bound, 2^(e − 24) for |bound| in [2^e, 2^(e+1)): the scale
    2^(24 − e) lifts that to ≥ 1 without overflowing the bias; a bound of 0 takes 2¹²⁶ (every normal float ≥ 1)."""
    channels = b.shape(y)[1]

    def side(sign: float, bound: float) -> str:
        scale = 2.0**126 if bound == 0 else 2.0 ** (24 - np.floor(np.log2(abs(bound))))
        weight = b.const(np.full((channels, 1, 1, 1), sign * scale), like=y)
        bias = b.const(np.full(channels, -sign * bound * scale), like=y)
        conv = b.op("Conv", y, weight, bias, group=channels, kernel_shape=[1, 1])
        return b.op("Clip", conv, b.const(0, like=y), b.const(1, like=y))

    return b.op("Mul", side(1.0, lo), side(-1.0, hi))


@rule("LeakyRelu")
def leaky_relu(b, n, dy):
    x, g = n.inputs[0], dy[0]
    slope = b.op("Mul", g, b.const(n.attrs.get("alpha", 0.01), like=x))
    return [b.op("Where", b.op("Greater", x, b.const(0, like=x)), g, slope)]


@rule("PRelu")
def prelu(b, n, dy):
    x, slope = n.inputs
    g, y = dy[0], n.outputs[0]
    positive = b.op("Greater", x, b.const(0, like=x))
    dx = b.op("Where", positive, g, b.op("Mul", g, slope))
    dslope = None
    if n.needs[1]:
        dslope = b.unbroadcast(b.op("Where", positive, b.const(0, like=x), b.op("Mul", g, x)), slope, y)
    return [dx, dslope]


@rule("Clip")
def clip(b, n, dy):
    """Strict mask min < x < max, as torch's clamp/hardtanh backward; bounds computed in the graph (scalars) get the
    sum of dY where they won: x ≤ min for min, x ≥ max (and x > min) for max."""
    x, lo, hi = n.input(0), n.input(1), n.input(2)
    bounds = [_scalar(b, lo, n.attrs.get("min")), _scalar(b, hi, n.attrs.get("max"))]
    if b.blocked(n.outputs[0]) and not any(n.needs[1:]) and None not in bounds and bounds[0] < bounds[1]:
        return [b.op("Mul", dy[0], _inside_mask(b, n.outputs[0], *bounds))]
    lo = lo or (b.const(n.attrs["min"], like=x) if "min" in n.attrs else None)
    hi = hi or (b.const(n.attrs["max"], like=x) if "max" in n.attrs else None)
    above = b.op("Greater", x, lo) if lo else None
    below = b.op("Less", x, hi) if hi else None
    conds = [c for c in (above, below) if c]
    if not conds:
        return [dy[0]]
    cond = conds[0] if len(conds) == 1 else b.op("And", *conds)
    zero, y = b.const(0, like=x), n.outputs[0]
    dlo = dhi = None
    if n.input(1) and n.needs[1]:
        dlo = b.unbroadcast(b.op("Where", above, zero, dy[0]), lo, y)
    if n.input(2) and n.needs[2]:
        won = b.op("Not", below) if not above else b.op("And", above, b.op("Not", below))
        dhi = b.unbroadcast(b.op("Where", won, dy[0], zero), hi, y)
    return [_mask(b, cond, dy[0], x) if n.needs[0] else None, dlo, dhi]


@rule("Sigmoid")
def sigmoid(b, n, dy):
    y = n.outputs[0]
    return [b.op("Mul", dy[0], b.op("Mul", y, b.op("Sub", b.const(1, like=y), y)))]


@rule("HardSigmoid")
def hard_sigmoid(b, n, dy):
    x = n.inputs[0]
    alpha, beta = n.attrs.get("alpha", 0.2), n.attrs.get("beta", 0.5)
    z = b.op("Add", b.op("Mul", x, b.const(alpha, like=x)), b.const(beta, like=x))
    inside = b.op("And", b.op("Greater", z, b.const(0, like=x)), b.op("Less", z, b.const(1, like=x)))
    return [_mask(b, inside, b.op("Mul", dy[0], b.const(alpha, like=x)), x)]


@rule("HardSwish")
def hard_swish(b, n, dy):
    """torch: 0 for x < -3, x/3 + 1/2 for -3 <= x <= 3, 1 above."""
    x, g = n.inputs[0], dy[0]
    middle = b.op("Add", b.op("Div", x, b.const(3, like=x)), b.const(0.5, like=x))
    slope = b.op("Where", b.op("Greater", x, b.const(3, like=x)), b.const(1, like=x), middle)
    slope = b.op("Where", b.op("Less", x, b.const(-3, like=x)), b.const(0, like=x), slope)
    return [b.op("Mul", g, slope)]


@rule("Tanh")
def tanh(b, n, dy):
    y = n.outputs[0]
    return [b.op("Mul", dy[0], b.op("Sub", b.const(1, like=y), b.op("Mul", y, y)))]


@rule("Erf")
def erf(b, n, dy):
    x = n.inputs[0]
    gauss = b.op("Exp", b.op("Neg", b.op("Mul", x, x)))
    return [b.op("Mul", dy[0], b.op("Mul", gauss, b.const(2 / math.sqrt(math.pi), like=x)))]


@rule("Gelu")
def gelu(b, n, dy):
    """erf form: Φ(x) + x·φ(x); tanh form: y = x/2·(1 + tanh(u)) with u = c·(x + 0.044715·x³)."""
    x = n.inputs[0]

    def k(value):
        return b.const(value, like=x)

    x2 = b.op("Mul", x, x)
    if n.attrs.get("approximate", "none") == "tanh":
        c = math.sqrt(2 / math.pi)
        t = b.op("Tanh", b.op("Mul", b.op("Add", x, b.op("Mul", k(0.044715), b.op("Mul", x2, x))), k(c)))
        du = b.op("Add", k(c), b.op("Mul", k(3 * 0.044715 * c), x2))
        sech2 = b.op("Sub", k(1), b.op("Mul", t, t))
        slope = b.op("Mul", k(0.5), b.op("Add", b.op("Add", k(1), t), b.op("Mul", x, b.op("Mul", sech2, du))))
    else:
        cdf = b.op("Mul", k(0.5), b.op("Add", k(1), b.op("Erf", b.op("Mul", x, k(1 / math.sqrt(2))))))
        pdf = b.op("Mul", k(1 / math.sqrt(2 * math.pi)), b.op("Exp", b.op("Mul", k(-0.5), x2)))
        slope = b.op("Add", cdf, b.op("Mul", x, pdf))
    return [b.op("Mul", dy[0], slope)]


@rule("Softplus")
def softplus(b, n, dy):
    return [b.op("Mul", dy[0], b.op("Sigmoid", n.inputs[0]))]


@rule("Elu", "Selu", "Celu")
def elu(b, n, dy):
    """Elu: 1 for x > 0, else y + α; Selu: γ, else y + γα; Celu: 1, else exp(x/α)."""
    x, y, g = n.inputs[0], n.outputs[0], dy[0]
    alpha = n.attrs.get("alpha", {"Elu": 1.0, "Celu": 1.0, "Selu": 1.67326319217681884765625}[n.op])
    gamma = n.attrs.get("gamma", 1.05070102214813232421875) if n.op == "Selu" else 1.0
    if n.op == "Celu":
        below = b.op("Exp", b.op("Div", x, b.const(alpha, like=x)))
    else:
        below = b.op("Add", y, b.const(alpha * gamma, like=x))
    slope = b.op("Where", b.op("Greater", x, b.const(0, like=x)), b.const(gamma, like=x), below)
    return [b.op("Mul", g, slope)]


@rule("Mish")
def mish(b, n, dy):
    """y = x·tanh(softplus(x)): tanh(sp) + x·σ(x)·(1 − tanh²(sp))."""
    x = n.inputs[0]
    t = b.op("Tanh", b.op("Softplus", x))
    sech2 = b.op("Sub", b.const(1, like=x), b.op("Mul", t, t))
    return [b.op("Mul", dy[0], b.op("Add", t, b.op("Mul", b.op("Mul", x, b.op("Sigmoid", x)), sech2)))]


@rule("Swish")
def swish(b, n, dy):
    """y = x·σ(αx) (opset 24): σ(αx)·(1 + αx·(1 − σ(αx)))."""
    x = n.inputs[0]
    ax = b.op("Mul", x, b.const(n.attrs.get("alpha", 1.0), like=x))
    s = b.op("Sigmoid", ax)
    one = b.const(1, like=x)
    return [b.op("Mul", dy[0], b.op("Mul", s, b.op("Add", one, b.op("Mul", ax, b.op("Sub", one, s)))))]


@rule("Softsign")
def softsign(b, n, dy):
    x = n.inputs[0]
    d = b.op("Add", b.const(1, like=x), b.op("Abs", x))
    return [b.op("Div", dy[0], b.op("Mul", d, d))]


@rule("ThresholdedRelu")
def thresholded_relu(b, n, dy):
    x = n.inputs[0]
    return [_mask(b, b.op("Greater", x, b.const(n.attrs.get("alpha", 1.0), like=x)), dy[0], x)]


@rule("Shrink")
def shrink(b, n, dy):
    """Slope 1 where |x| > lambd, else 0."""
    x = n.inputs[0]
    return [_mask(b, b.op("Greater", b.op("Abs", x), b.const(n.attrs.get("lambd", 0.5), like=x)), dy[0], x)]


def _trig(b, op: str, x: str, y: str) -> str:
    """f'(x) for the trigonometric and hyperbolic functions and their inverses."""
    def k(value):
        return b.const(value, like=x)

    def square():
        return b.op("Mul", x, x)

    def rsqrt(t):
        return b.op("Reciprocal", b.op("Sqrt", t))

    forms = {
        "Sin": lambda: b.op("Cos", x),
        "Cos": lambda: b.op("Neg", b.op("Sin", x)),
        "Tan": lambda: b.op("Add", k(1), b.op("Mul", y, y)),
        "Asin": lambda: rsqrt(b.op("Sub", k(1), square())),
        "Acos": lambda: b.op("Neg", rsqrt(b.op("Sub", k(1), square()))),
        "Atan": lambda: b.op("Reciprocal", b.op("Add", k(1), square())),
        "Sinh": lambda: b.op("Cosh", x),
        "Cosh": lambda: b.op("Sinh", x),
        "Asinh": lambda: rsqrt(b.op("Add", square(), k(1))),
        "Acosh": lambda: rsqrt(b.op("Sub", square(), k(1))),
        "Atanh": lambda: b.op("Reciprocal", b.op("Sub", k(1), square())),
    }
    return forms[op]()


@rule("Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh")
def trigonometric(b, n, dy):
    return [b.op("Mul", dy[0], _trig(b, n.op, n.inputs[0], n.outputs[0]))]


@rule("Exp")
def exp(b, n, dy):
    return [b.op("Mul", dy[0], n.outputs[0])]


@rule("Log")
def log(b, n, dy):
    return [b.op("Div", dy[0], n.inputs[0])]


@rule("Sqrt")
def sqrt(b, n, dy):
    y = n.outputs[0]
    return [b.op("Div", dy[0], b.op("Mul", y, b.const(2, like=y)))]


@rule("Neg")
def neg(b, n, dy):
    return [b.op("Neg", dy[0])]


@rule("Abs")
def abs_(b, n, dy):
    return [b.op("Mul", dy[0], b.op("Sign", n.inputs[0]))]


@rule("Reciprocal")
def reciprocal(b, n, dy):
    y = n.outputs[0]
    return [b.op("Neg", b.op("Mul", dy[0], b.op("Mul", y, y)))]


@rule("Softmax")
def softmax(b, n, dy):
    y, g, axis = n.outputs[0], dy[0], n.attrs.get("axis", -1)
    inner = b.reduce("ReduceSum", b.op("Mul", g, y), [axis])
    return [b.op("Mul", y, b.op("Sub", g, inner))]


@rule("LogSoftmax")
def log_softmax(b, n, dy):
    y, g, axis = n.outputs[0], dy[0], n.attrs.get("axis", -1)
    return [b.op("Sub", g, b.op("Mul", b.op("Exp", y), b.reduce("ReduceSum", g, [axis])))]


@rule("Identity", "Dropout")
def identity(b, n, dy):
    return [dy[0]]


@rule("Cast", "CastLike")
def cast(b, n, dy):
    x = n.inputs[0]
    return [b.op("Cast", dy[0], to=b.types[x]) if x in b.types else b.op("CastLike", dy[0], x)]
