"""Normalization layers in inference form (running statistics are constants)."""

from __future__ import annotations

from ...errors import UnsupportedOpError
from . import rule


@rule("BatchNormalization")
def batch_norm(b, n, dy):
    """dX = dY · γ/√(σ²+ε), broadcast over (1, C, 1, ...)."""
    if n.attrs.get("training_mode", 0):
        raise UnsupportedOpError(n.op, n.name, "training_mode=1 (batch statistics)")
    x, scale, var = n.inputs[0], n.inputs[1], n.inputs[4]
    rank = b.rank(x)
    eps = b.const(n.attrs.get("epsilon", 1e-5), like=var)
    factor = b.op("Div", scale, b.op("Sqrt", b.op("Add", var, eps)))
    factor = b.op("Reshape", factor, b.ints([1, -1] + [1] * (rank - 2)))
    return [b.op("Mul", dy[0], factor)]


def standardize(b, x: str, axes: list[int], eps: str) -> tuple[str, str]:
    """x̂ = (X − mean)·r and r = 1/√(var + ε) over `axes` (keepdims), recomputed from X."""
    centered = b.op("Sub", x, b.reduce("ReduceMean", x, axes))
    var = b.reduce("ReduceMean", b.op("Mul", centered, centered), axes)
    r = b.op("Reciprocal", b.op("Sqrt", b.op("Add", var, eps)))
    return b.op("Mul", centered, r), r


def standardize_vjp(b, g: str, xhat: str, r: str, axes: list[int]) -> str:
    """dX = r⊙(g − mean(g) − x̂⊙mean(g⊙x̂)) for g = ∂/∂x̂."""
    mean_g = b.reduce("ReduceMean", g, axes)
    mean_gx = b.reduce("ReduceMean", b.op("Mul", g, xhat), axes)
    return b.op("Mul", r, b.op("Sub", b.op("Sub", g, mean_g), b.op("Mul", xhat, mean_gx)))


def epsilon(b, n) -> str:
    return b.const(n.attrs.get("epsilon", 1e-5), like=n.inputs[0])


def _no_statistics_gradient(n, dy) -> None:
    if any(d is not None for d in dy[1:]):
        raise UnsupportedOpError(n.op, n.name, "gradients through the Mean/InvStdDev outputs")


@rule("LayerNormalization")
def layer_norm(b, n, dy):
    """Standardized over axes [axis, rank), then scaled and shifted (scale/bias broadcast numpy-style)."""
    _no_statistics_gradient(n, dy)
    x, scale, bias, y = n.inputs[0], n.inputs[1], n.input(2), n.outputs[0]
    rank = b.rank(x)
    axes = list(range(n.attrs.get("axis", -1) % rank, rank))
    xhat, r = standardize(b, x, axes, epsilon(b, n))
    dx = standardize_vjp(b, b.op("Mul", dy[0], scale), xhat, r, axes) if n.needs[0] else None
    dscale = b.unbroadcast(b.op("Mul", dy[0], xhat), scale, y) if n.needs[1] else None
    dbias = b.unbroadcast(dy[0], bias, y) if bias and n.needs[2] else None
    return [dx, dscale, dbias]


@rule("InstanceNormalization")
def instance_norm(b, n, dy):
    """Standardized per sample and channel over the spatial axes; scale and bias are per channel."""
    x, scale = n.inputs[0], n.inputs[1]
    rank = b.rank(x)
    axes, others = list(range(2, rank)), [0, *range(2, rank)]
    xhat, r = standardize(b, x, axes, epsilon(b, n))
    per_channel = b.op("Reshape", scale, b.ints([-1] + [1] * (rank - 2)))
    dx = standardize_vjp(b, b.op("Mul", dy[0], per_channel), xhat, r, axes) if n.needs[0] else None
    dscale = b.reduce("ReduceSum", b.op("Mul", dy[0], xhat), others, keepdims=0) if n.needs[1] else None
    dbias = b.reduce("ReduceSum", dy[0], others, keepdims=0) if n.needs[2] else None
    return [dx, dscale, dbias]


@rule("GroupNormalization")
def group_norm(b, n, dy):
    """Standardized over [N, G, C/G·spatial], scale and bias per channel (opset 21; onnx rejects the opset-18 form)."""
    x, scale = n.inputs[0], n.inputs[1]
    rank = b.rank(x)
    as_groups, others = b.ints([0, n.attrs["num_groups"], -1]), [0, *range(2, rank)]
    xhat, r = standardize(b, b.op("Reshape", x, as_groups), [2], epsilon(b, n))
    dx = dscale = None
    if n.needs[0]:
        per_channel = b.op("Reshape", scale, b.ints([-1] + [1] * (rank - 2)))
        weighted = b.op("Reshape", b.op("Mul", dy[0], per_channel), as_groups)
        dx = b.reshape_like(standardize_vjp(b, weighted, xhat, r, [2]), x)
    if n.needs[1]:
        dscale = b.reduce("ReduceSum", b.op("Mul", dy[0], b.reshape_like(xhat, x)), others, keepdims=0)
    dbias = b.reduce("ReduceSum", dy[0], others, keepdims=0) if n.needs[2] else None
    return [dx, dscale, dbias]


@rule("LRN")
def lrn(b, n, dy):
    """Y = X·D^−β, D = bias + α/size·S(X²), S the sum over channels [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]:
    dX = dY·D^−β − (2αβ/size)·X·S'(dY·Y/D), S' the same sum over the mirrored window (channel j adds to every c
    whose window holds j)."""
    x, y, g = n.inputs[0], n.outputs[0], dy[0]
    size = n.attrs["size"]
    alpha, beta, bias = n.attrs.get("alpha", 1e-4), n.attrs.get("beta", 0.75), n.attrs.get("bias", 1.0)
    before, after = (size - 1) // 2, size // 2
    rank = b.rank(x)
    window = _channel_sum(b, b.op("Mul", x, x), rank, before, after)
    d = b.op("Add", b.const(bias, like=x), b.op("Mul", window, b.const(alpha / size, like=x)))
    back = _channel_sum(b, b.op("Div", b.op("Mul", g, y), d), rank, after, before)
    direct = b.op("Mul", g, b.op("Pow", d, b.const(-beta, like=x)))
    return [b.op("Sub", direct, b.op("Mul", b.op("Mul", x, back), b.const(2 * alpha * beta / size, like=x)))]


def _channel_sum(b, t: str, rank: int, before: int, after: int) -> str:
    """Σ_{j = c − before}^{c + after} t[:, j] (zeros beyond the channels): one Slice of the padded tensor per offset."""
    padded = b.op("Pad", t, b.ints([0, before] + [0] * (rank - 2) + [0, after] + [0] * (rank - 2)))
    last = before + after
    parts = [b.op("Slice", padded, b.ints([k]), b.ints([k - last if k < last else 2**62]), b.ints([1]))
             for k in range(last + 1)]
    return b.add_all(parts)


@rule("RMSNormalization")
def rms_norm(b, n, dy):
    """Y = X·r·scale, r = 1/√(mean(X²) + ε) over [axis, rank) (opset 23): dX = r·(g − X·r²·mean(g·X)), g = dY·scale."""
    x, scale, y = n.inputs[0], n.inputs[1], n.outputs[0]
    rank = b.rank(x)
    axes = list(range(n.attrs.get("axis", -1) % rank, rank))
    r = b.op("Reciprocal", b.op("Sqrt", b.op("Add", b.reduce("ReduceMean", b.op("Mul", x, x), axes), epsilon(b, n))))
    dx = dscale = None
    if n.needs[0]:
        g = b.op("Mul", dy[0], scale)
        inner = b.op("Mul", b.op("Mul", r, r), b.reduce("ReduceMean", b.op("Mul", g, x), axes))
        dx = b.op("Mul", r, b.op("Sub", g, b.op("Mul", x, inner)))
    if n.needs[1]:
        dscale = b.unbroadcast(b.op("Mul", dy[0], b.op("Mul", x, r)), scale, y)
    return [dx, dscale]


@rule("LpNormalization")
def lp_norm(b, n, dy):
    """Y = X/‖X‖_p along `axis` (p = 1 or 2): dX = (dY − Σ(dY·Y)·∂‖X‖/∂X)/‖X‖, ∂‖X‖/∂X = sign(X) or Y."""
    x, y, g = n.inputs[0], n.outputs[0], dy[0]
    axis, p = n.attrs.get("axis", -1) % b.rank(x), n.attrs.get("p", 2)
    norm = b.reduce("ReduceL1" if p == 1 else "ReduceL2", x, [axis])
    direction = b.op("Sign", x) if p == 1 else y
    inner = b.reduce("ReduceSum", b.op("Mul", g, y), [axis])
    return [b.op("Div", b.op("Sub", g, b.op("Mul", direction, inner)), norm)]
