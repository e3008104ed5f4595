"""Input-level attributions (∂score/∂input through the whole network): saliency, Integrated Gradients, SmoothGrad."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from . import register
from .cam import gradient, single
from .definition import Gradient, Noise, Path
from .options import Options, baseline_option, option, samples, score, seed, sigma, steps

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
            raise UsageError("riemann_trapezoid needs steps >= 2")
        w = np.full(n, 1 / (n - 1))
        w[[0, -1]] /= 2
        return k / (n - 1), w
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (k + offset) / n, np.full(n, 1 / n)


@dataclass(frozen=True)
class SaliencyOptions(Options):
    score: str = score()


def signed_gradient(ops, s, ctx, o):
    """∂y/∂x; the heatmap takes max_c |∂y/∂x| (Simonyan et al.)."""
    return {"map": s["g"]}


register(Gradient("saliency", SaliencyOptions, "input", single, gradient, signed_gradient, reduce="max"))


@dataclass(frozen=True)
class IgOptions(Options):
    steps: int = steps(50)
    baseline: object = baseline_option(0.0)
    quadrature: str = option("gausslegendre", "Quadrature rule of the path integral (Captum's names).",
                             kind="choice", choices=QUADRATURES)
    score: str = score()

    def __post_init__(self):
        super().__post_init__()
        quadrature_nodes(self.quadrature, self.steps)


def quadrature(o: IgOptions) -> Path:
    return Path(*quadrature_nodes(o.quadrature, o.steps), o.baseline)


def weighted_gradient(ops, row, o):
    return {"g": row.w * row.g}


def integrated_gradients(ops, s, ctx, o):
    """IG = (x − x') ⊙ Σ_i w_i ∇F(x' + α_i (x − x'))."""
    attribution = (ctx.x - ctx.baseline) * s["g"]
    return {"map": attribution, "total": ops.sum(attribution, ctx.image_axes)}


register(Gradient("ig", IgOptions, "input", quadrature, weighted_gradient, integrated_gradients))


@dataclass(frozen=True)
class SmoothGradOptions(Options):
    samples: int = samples()
    sigma: float = sigma()
    variant: str = option("smoothgrad", "Mean of the gradients, of their squares, or their variance.", kind="choice",
                          choices=("smoothgrad", "smoothgrad_sq", "vargrad"))
    seed: int = seed()
    score: str = score()


def noise(o) -> Noise:
    return Noise(o.samples, o.sigma, o.seed)


def moments(ops, row, o):
    return {"m1": row.w * row.g, "m2": row.w * row.g * row.g}


def smoothgrad(ops, s, ctx, o: SmoothGradOptions):
    """Mean (smoothgrad), mean of squares (smoothgrad_sq) or variance (vargrad) of ∇F(x + N(0, (σ·range)²))."""
    m1, m2 = s["m1"], s["m2"]
    if o.variant == "vargrad":
        return {"map": m2 - m1 * m1}
    return {"map": m1 if o.variant == "smoothgrad" else m2}


register(Gradient("smoothgrad", SmoothGradOptions, "input", noise, moments, smoothgrad))
