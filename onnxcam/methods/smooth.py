"""Smooth Grad-CAM++: Grad-CAM++ with the gradient powers averaged over noisy copies of the input."""

from __future__ import annotations

import numpy as np

from ..errors import OnnxcamError
from . import method
from .cam import relu
from .common import cam_explanation, layer_forward, layer_stream, positive_int, to_grid


def noise(seed: int, image: int, sample: int, shape: tuple) -> np.ndarray:
    """Standard normal noise for one (image, sample), independent of how rows are chunked."""
    return np.random.default_rng([seed, image, sample]).standard_normal(shape).astype(np.float32)


@method("smooth-gradcam++")
def smooth_gradcam_pp(ex, x, targets, layer, samples: int = 25, sigma: float = 0.15, channels=None, neurons=None,
                      seed: int = 0, score: str = "logit", batch_size: int | None = None):
    """D_p = ⟨G^p⟩ over x + N(0, (σ·range(x))²); α = D2 / (2 D2 + Σ_ab A · D3); w_k = Σ_ij α ReLU(D1).

    `channels` restricts the k-sum to some feature maps, `neurons` (a boolean (h, w) mask) the positions."""
    n_samples = positive_int("samples", samples)
    if not np.isfinite(sigma) or sigma < 0:
        raise OnnxcamError(f"sigma must be a finite number >= 0 (a fraction of the input range); got {sigma!r}")
    logits, chosen, acts = layer_forward(ex, x, targets, layer, batch_size)
    spread = sigma * (x.reshape(len(x), -1).max(1) - x.reshape(len(x), -1).min(1))

    def rows(r):
        i, k = np.divmod(r, n_samples)
        return np.stack([x[a] + spread[a] * noise(seed, a, b, x.shape[1:]) for a, b in zip(i, k)])

    d1, d2, d3 = (np.zeros(acts.shape, np.float64) for _ in range(3))
    stream = layer_stream(ex, layer, score, rows, len(x) * n_samples, np.repeat(chosen, n_samples), batch_size)
    for r, _, _, g in stream:
        g = to_grid(g, layer).astype(np.float64)
        i = r // n_samples
        np.add.at(d1, i, g / n_samples)
        np.add.at(d2, i, g**2 / n_samples)
        np.add.at(d3, i, g**3 / n_samples)
    if neurons is not None:
        mask = np.asarray(neurons, bool)
        if mask.shape != acts.shape[2:]:
            raise OnnxcamError(f"neurons must be a boolean mask of the layer grid {acts.shape[2:]}; got {mask.shape}")
        d1, d2, d3 = (d * mask for d in (d1, d2, d3))
    denom = 2 * d2 + acts.sum(axis=(2, 3), keepdims=True) * d3
    alpha = np.divide(d2, denom, out=np.zeros_like(d2), where=denom != 0)
    weights = (alpha * relu(d1)).sum(axis=(2, 3))
    if channels is not None:
        keep = np.zeros(acts.shape[1], bool)
        try:
            keep[np.asarray(channels, int)] = True
        except (IndexError, ValueError):
            raise OnnxcamError(f"channels must be indices in 0..{acts.shape[1] - 1}; got {channels!r}") from None
        weights = weights * keep
    cam = relu(np.einsum("nk,nkhw->nhw", weights, acts))
    return cam_explanation(ex, "smooth-gradcam++", layer, cam, logits, chosen,
                           extras={"rows": {"gradient": len(x) * n_samples, "forward": len(x)}})
