"""The Grad-CAM family: one row per image; the weighting of A by G, once for the engine and the export.

Grids are (…, K, *space): `ops.space` are the layer's spatial axes (ij below; l, hw or dhw), `ops.channel` is k."""

from __future__ import annotations

from dataclasses import dataclass

from . import register
from .definition import Gradient, Single
from .options import Options, score


@dataclass(frozen=True)
class CamOptions(Options):
    score: str = score()


def single(o):
    return Single()


def gradient(ops, row, o):
    return {"g": row.g}


def weighted(ops, w, a):
    """ReLU(Σ_k w_k A^k)."""
    return ops.relu(ops.channel_dot(w, a))


def gradcam(ops, s, ctx, o):
    """w_k = mean_ij G^k_ij."""
    return {"map": weighted(ops, ops.mean(s["g"], ops.space, keepdims=True), ctx.a)}


def gradcam_pp(ops, s, ctx, o):
    """α = G² / (2G² + Σ_ab A · G³ + 1e-6), 0 where G = 0; w_k = Σ_ij ReLU(G) α."""
    g, a = s["g"], ctx.a
    g2 = g * g
    alpha = ops.where_zero(g, 0.0, g2 / (2 * g2 + ops.sum(a, ops.space, keepdims=True) * g2 * g + 1e-6))
    return {"map": weighted(ops, ops.sum(ops.relu(g) * alpha, ops.space, keepdims=True), a)}


def xgradcam(ops, s, ctx, o):
    """w_k = Σ_ij G^k A^k / (Σ_ab A^k + 1e-7)."""
    a = ctx.a
    w = ops.sum(s["g"] * a / (ops.sum(a, ops.space, keepdims=True) + 1e-7), ops.space, keepdims=True)
    return {"map": weighted(ops, w, a)}


def layercam(ops, s, ctx, o):
    """Σ_k ReLU(G^k) ⊙ A^k, element-wise."""
    return {"map": ops.relu(ops.sum(ops.relu(s["g"]) * ctx.a, ops.channel))}


def hirescam(ops, s, ctx, o):
    """Σ_k G^k ⊙ A^k: the gradient kept at full resolution."""
    return {"map": ops.relu(ops.sum(s["g"] * ctx.a, ops.channel))}


for name, finish in {"gradcam": gradcam, "gradcam++": gradcam_pp, "xgradcam": xgradcam, "layercam": layercam,
                     "hirescam": hirescam}.items():
    register(Gradient(name, CamOptions, "layer", single, gradient, finish))
