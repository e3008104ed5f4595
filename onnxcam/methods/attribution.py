"""Input-level attributions (∂score/∂input through the whole network): saliency, Integrated Gradients, SmoothGrad."""

from __future__ import annotations

import numpy as np

from ..autodiff import grad_name
from ..engine import Explanation
from ..errors import OnnxcamError
from . import method
from .common import baseline_like, batch_rows, constant_maps, forward_top1, normalize_maps, positive_int, score_of
from .path import interpolate
from .smooth import noise

QUADRATURES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature_nodes(rule: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes α in [0, 1] and weights of ∫₀¹ f(α) dα, with Captum's conventions but one.

    gausslegendre and riemann_left/right/middle are Captum's exactly. riemann_trapezoid is the trapezoid rule on
    α = k/(n − 1): weights 1/(n − 1), halved at both ends, summing to 1. Captum's takes the same nodes with weights
    1/n (halved ends), which sum to (n − 1)/n: its attributions are (n − 1)/n times these and miss completeness by
    that factor."""
    if rule == "gausslegendre":
        xi, w = np.polynomial.legendre.leggauss(n)
        return (1 + xi) / 2, w / 2
    k = np.arange(n)
    if rule == "riemann_trapezoid":
        if n < 2:
            raise OnnxcamError("riemann_trapezoid needs steps >= 2")
        w = np.full(n, 1 / (n - 1))
        w[[0, -1]] /= 2
        return k / (n - 1), w
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}.get(rule)
    if offset is None:
        raise OnnxcamError(f"unknown quadrature {rule!r}; choose one of {', '.join(QUADRATURES)}")
    return (k + offset) / n, np.full(n, 1 / n)


def input_gradients(ex, make_rows, n_rows: int, targets, score: str, batch_size):
    """Chunks of (rows, logits, ∂score/∂x) for rows built lazily."""
    name = ex.model.image_input
    graph = ex.graph((name,), score)
    for p in graph.stream(make_rows, n_rows, targets, batch_rows(batch_size), [grad_name(name)]):
        yield p.rows, p.logits, p.outputs[grad_name(name)]


def channel_axis(ex) -> int:
    return 1 if ex.model.layout == "NCHW" else 3


def attribution_explanation(ex, name, attribution, logits, targets, reduce="sum", **extra) -> Explanation:
    """Heatmap = per-pixel Σ_c |a| (or max_c), min-max normalized per image."""
    magnitude = np.abs(attribution)
    axis = channel_axis(ex)
    pixel = magnitude.sum(axis=axis) if reduce == "sum" else magnitude.max(axis=axis)
    if constant_maps(pixel):
        raise OnnxcamError(f"{name} attribution is constant (zero gradient) for an image; try another target or method")
    return Explanation(method=name, heatmap=normalize_maps(pixel).astype(np.float32), logits=logits, target=targets,
                       attribution=attribution.astype(np.float32), **extra)


@method("saliency")
def saliency(ex, x, targets, layer, score: str = "logit", batch_size: int | None = None):
    """|∂y/∂x|, reduced over channels by max (Simonyan et al.); `attribution` keeps the signed gradient."""
    chunks = list(input_gradients(ex, lambda r: x[r], len(x), targets, score, batch_size))
    logits = np.concatenate([c[1] for c in chunks])
    grads = np.concatenate([c[2] for c in chunks])
    return attribution_explanation(ex, "saliency", grads, logits, np.where(targets < 0, logits.argmax(-1), targets),
                                   reduce="max")


@method("ig")
def integrated_gradients(ex, x, targets, layer, steps: int = 50, baseline=0.0, quadrature: str = "gausslegendre",
                         score: str = "logit", batch_size: int | None = None):
    """IG = (x − x') ⊙ Σ_i w_i ∇F(x' + α_i (x − x')); the gap Σ IG − (F(x) − F(x')) is reported.

    F(x) and F(x') come from forward rows (one baseline row when all images share it); only the N·n path points
    pay a backward pass."""
    n = positive_int("steps", steps)
    base = baseline_like(baseline, x, ex.model)
    alphas, weights = quadrature_nodes(quadrature, n)
    logits, chosen = forward_top1(ex, x, targets, batch_size)
    shared = all(np.array_equal(base[0], base[i]) for i in range(1, len(x)))
    b = 1 if shared else len(x)
    base_logits, _ = forward_top1(ex, base[:b], chosen[:b], batch_size)
    y1 = np.array([score_of(logits[i], chosen[i], score) for i in range(len(x))])
    y0 = np.array([score_of(base_logits[0 if shared else i], chosen[i], score) for i in range(len(x))])
    total = np.zeros(x.shape, np.float64)
    for r, _, g in input_gradients(ex, interpolate(x, base, alphas), len(x) * n, np.repeat(chosen, n), score,
                                   batch_size):
        i, k = np.divmod(r, n)
        for image in np.unique(i):
            on = i == image
            total[image] += np.tensordot(weights[k[on]], g[on], axes=1)
    attribution = (x - base) * total
    gap = attribution.reshape(len(x), -1).sum(1) - (y1 - y0)
    return attribution_explanation(ex, "ig", attribution, logits, chosen, completeness_gap=gap,
                                   extras={"score_delta": y1 - y0, "quadrature": quadrature,
                                           "rows": {"gradient": len(x) * n, "forward": len(x) + b}})


@method("smoothgrad")
def smoothgrad(ex, x, targets, layer, samples: int = 25, sigma: float = 0.15, variant: str = "smoothgrad",
               seed: int = 0, score: str = "logit", batch_size: int | None = None):
    """Mean (smoothgrad), mean of squares (smoothgrad_sq) or variance (vargrad) of ∇F(x + N(0, (σ·range)²))."""
    n = positive_int("samples", samples)
    if variant not in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        raise OnnxcamError(f"variant must be smoothgrad, smoothgrad_sq or vargrad; got {variant!r}")
    if not np.isfinite(sigma) or sigma < 0:
        raise OnnxcamError(f"sigma must be a finite number >= 0 (a fraction of the input range); got {sigma!r}")
    logits, chosen = forward_top1(ex, x, targets, batch_size)
    flat = x.reshape(len(x), -1)
    spread = sigma * (flat.max(1) - flat.min(1))

    def rows(r):
        i, k = np.divmod(r, n)
        return np.stack([x[a] + spread[a] * noise(seed, a, b, x.shape[1:]) for a, b in zip(i, k)])

    m1, m2 = np.zeros(x.shape, np.float64), np.zeros(x.shape, np.float64)
    for r, _, g in input_gradients(ex, rows, len(x) * n, np.repeat(chosen, n), score, batch_size):
        np.add.at(m1, r // n, g / n)
        np.add.at(m2, r // n, g.astype(np.float64) ** 2 / n)
    attribution = {"smoothgrad": m1, "smoothgrad_sq": m2, "vargrad": m2 - m1**2}[variant]
    return attribution_explanation(ex, "smoothgrad", attribution, logits, chosen, extras={"variant": variant})
