"""Smooth Grad-CAM++: Grad-CAM++ with the gradient powers averaged over noisy copies of the input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from . import register
from .attribution import noise as noise_rows
from .cam import weighted
from .definition import Gradient
from .options import Options, option, samples, score, seed, sigma


def noise(seed: int, image: int, sample: int, shape: tuple) -> np.ndarray:
    """Standard normal noise for one (image, sample), independent of how rows are chunked."""
    return np.random.default_rng([seed, image, sample]).standard_normal(shape).astype(np.float32)


@dataclass(frozen=True)
class SmoothGradcamPPOptions(Options):
    samples: int = samples()
    sigma: float = sigma()
    channels: object = option(None, "Feature maps k the weighted sum keeps (indices).", kind="custom", cli=False)
    neurons: object = option(None, "Positions of the layer grid the gradients keep (a boolean (h, w) mask).",
                             kind="custom", cli=False)
    seed: int = seed()
    score: str = score()


def powers(ops, row, o):
    """w·G, w·G², w·G³ with w = 1/samples: the means D1, D2, D3 once summed."""
    g2 = row.g * row.g
    return {"d1": row.w * row.g, "d2": row.w * g2, "d3": row.w * g2 * row.g}


def smooth_gradcam_pp(ops, s, ctx, o: SmoothGradcamPPOptions):
    """α = D2 / (2 D2 + Σ_ab A · D3); w_k = Σ_ij α ReLU(D1); `neurons` masks D, `channels` masks w."""
    d1, d2, d3 = s["d1"], s["d2"], s["d3"]
    if o.neurons is not None:
        mask = np.asarray(o.neurons, bool)
        if mask.shape != tuple(ctx.grid):
            raise UsageError(f"neurons must be a boolean mask of the layer grid {tuple(ctx.grid)}; got {mask.shape}")
        keep = mask.astype(np.float32)
        d1, d2, d3 = d1 * keep, d2 * keep, d3 * keep
    alpha = ops.div_or_zero(d2, 2 * d2 + ops.sum(ctx.a, ops.space, keepdims=True) * d3)
    w = ops.sum(alpha * ops.relu(d1), ops.space, keepdims=True)
    if o.channels is not None:
        keep = np.zeros(ctx.channels, np.float32)
        try:
            keep[np.asarray(o.channels, int)] = 1
        except (IndexError, ValueError, TypeError):
            raise UsageError(f"channels must be indices in 0..{ctx.channels - 1}; got {o.channels!r}") from None
        w = w * keep.reshape(-1, *[1] * ops.rank)
    return {"map": weighted(ops, w, ctx.a)}


register(Gradient("smooth-gradcam++", SmoothGradcamPPOptions, "layer", noise_rows, powers, smooth_gradcam_pp))
