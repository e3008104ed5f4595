"""Normalization layers in inference form (running statistics are constants)."""

from __future__ import annotations

from . import rule


@rule("BatchNormalization")
def batch_norm(b, n, dy):
    """dX = dY · γ/√(σ²+ε), broadcast over (1, C, 1, ...)."""
    x, scale, var = n.inputs[0], n.inputs[1], n.inputs[4]
    rank = b.rank(x)
    eps = b.const(n.attrs.get("epsilon", 1e-5), like=var)
    factor = b.op("Div", scale, b.op("Sqrt", b.op("Add", var, eps)))
    factor = b.op("Reshape", factor, b.ints([1, -1] + [1] * (rank - 2)))
    return [b.op("Mul", dy[0], factor)]
