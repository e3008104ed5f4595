"""Deletion / insertion (RISE, Petsiuk et al. 2018) and drop / increase in confidence (Grad-CAM++), batched in ORT."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OnnxcamError
from ..opencv import cv2
from .common import Images, check_maps, check_targets, images, positive, row_scores


@dataclass
class Curve:
    """One causal curve per image: the target's probability after each step of `step` pixels."""

    fractions: np.ndarray  # (K+1,) fraction of pixels changed
    scores: np.ndarray  # (N, K+1) softmax probability of the target
    auc: np.ndarray  # (N,)


def auc(scores: np.ndarray) -> np.ndarray:
    """RISE's trapezoid area on a unit x-range: (Σs − s₀/2 − s_K/2) / K, per row."""
    s = np.atleast_2d(scores)
    return (s.sum(-1) - s[:, 0] / 2 - s[:, -1] / 2) / (s.shape[-1] - 1)


def gaussian_kernel(size: int = 11, sigma: float = 5.0) -> np.ndarray:
    """RISE's gkern: scipy's gaussian_filter (reflect mode, truncate 4) of a centered delta on a size×size grid."""
    radius = int(4 * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    w /= w.sum()
    k1 = np.zeros(size)
    for j in range(size):
        p = np.mod(j + t, 2 * size)
        p = np.where(p >= size, 2 * size - 1 - p, p)  # half-sample symmetric reflection, repeated
        k1[j] = w[p == size // 2].sum()
    return np.outer(k1, k1)


def blur(x: np.ndarray, size: int = 11, sigma: float = 5.0) -> np.ndarray:
    """Each channel of (N, C, H, W) correlated with RISE's kernel, zero padding (torch conv2d, padding=size//2)."""
    k = gaussian_kernel(size, sigma).astype(np.float32)
    out = np.empty_like(x, dtype=np.float32)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[i, c] = cv2.filter2D(x[i, c].astype(np.float32), -1, k, borderType=cv2.BORDER_CONSTANT)
    return out


def salient_rank(saliency: np.ndarray) -> np.ndarray:
    """rank[i, p]: the position of pixel p when image i's pixels are sorted by decreasing saliency (ties: raster order)."""
    flat = saliency.reshape(len(saliency), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(flat.shape[1])[None], axis=1)
    return rank


def causal_curve(ex, imgs: Images, start: np.ndarray, finish: np.ndarray, saliency: np.ndarray, targets,
                 step: int | None, batch_size: int | None) -> Curve:
    """Move pixels from `start` to `finish` in saliency order, `step` per iteration; score every iteration."""
    n, c, h, w = imgs.nchw.shape
    hw = h * w
    step = w if step is None else positive("step", step, integer=True)
    k = -(-hw // step)
    rank = salient_rank(saliency)

    def rows(r):
        i, s = np.divmod(r, k + 1)
        moved = rank[i] < (s * step)[:, None]  # (B, H*W)
        out = np.where(moved[:, None, :], finish[i].reshape(len(r), c, hw), start[i].reshape(len(r), c, hw))
        return out.reshape(len(r), c, h, w)

    scores = row_scores(ex, imgs, rows, n * (k + 1), np.repeat(targets, k + 1), batch_size).reshape(n, k + 1)
    return Curve(fractions=np.minimum(np.arange(k + 1) * step, hw) / hw, scores=scores, auc=auc(scores))


def _prepare(ex, x, saliency, targets, batch_size):
    imgs = images(ex, x)
    maps = check_maps(saliency, len(imgs.nchw), imgs.nchw.shape[2:])
    return imgs, maps, check_targets(ex, imgs.to_model(imgs.nchw), targets, batch_size)


def deletion(ex, x, saliency, targets, step: int | None = None, batch_size: int | None = None) -> Curve:
    """Most salient pixels first set to 0 (in the model's normalized input space); lower AUC is better.

    step: pixels per iteration, default W (one image row: 224 for 224×224, RISE's); curves have ⌈H·W/step⌉ + 1 points."""
    imgs, maps, t = _prepare(ex, x, saliency, targets, batch_size)
    return causal_curve(ex, imgs, imgs.nchw, np.zeros_like(imgs.nchw), maps, t, step, batch_size)


def insertion(ex, x, saliency, targets, step: int | None = None, batch_size: int | None = None) -> Curve:
    """Most salient pixels first copied into a blurred copy (kernel 11, σ = 5); higher AUC is better."""
    imgs, maps, t = _prepare(ex, x, saliency, targets, batch_size)
    return causal_curve(ex, imgs, blur(imgs.nchw), imgs.nchw, maps, t, step, batch_size)


def confidence_change(ex, x, saliency, targets, score: str = "prob",
                      batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per image: drop % = 100·max(0, Y − O)/Y and increase = [O > Y], O the score of E = L̂ ⊙ x (Grad-CAM++)."""
    imgs, maps, t = _prepare(ex, x, saliency, targets, batch_size)
    if (maps < 0).any():
        raise OnnxcamError("saliency has negative values; confidence change weights the image by a map in [0, 1]")
    n = len(maps)

    def rows(r):
        i = r % n
        return np.where((r < n)[:, None, None, None], imgs.nchw[i], imgs.nchw[i] * maps[i, None].astype(np.float32))

    s = row_scores(ex, imgs, rows, 2 * n, np.tile(t, 2), batch_size, score)
    y, o = s[:n], s[n:]
    if score == "prob":
        drop = 100 * np.maximum(0, y - o) / y
    else:
        drop = 100 * np.maximum(0, y - o) / np.where(y != 0, np.abs(y), 1)
    return drop, (o > y).astype(np.float64)
