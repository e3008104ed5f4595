"""Dual-norm worst-case perturbations of the simple gradient (Gong, Dou, Farnia, CVPR 2024).

max_{‖δ‖≤ε} g·δ = ε‖g‖_*: for each budget the maximizing δ, the first-order change it predicts, the change the
model actually shows under it, and the change under a random δ of the same norm (the worst case for a Gaussian
"gradient", so it has the same norm and structure but no knowledge of the model)."""

from __future__ import annotations

import numpy as np

from ..autodiff import grad_name
from ..errors import OnnxcamError
from ..runner import batch_rows
from .common import check_targets, images, positive, row_scores, scores_of
from .structure import _group_norms

NORMS = ("linf", "l2", "l1", "elastic", "group")


def _per_image(v: np.ndarray) -> np.ndarray:
    return v.reshape(len(v), -1)


def worst_direction(g: np.ndarray, norm: str, eps: float, eps2: float, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """(δ maximizing g·δ on the budget, ε‖g‖_* its dual value) for (N, C, H, W) gradients, float64.

    linf: ε·sign(g), ε‖g‖₁.  l2: ε·g/‖g‖₂, ε‖g‖₂.  l1: ε·sign(g_j) at j = argmax|g|, ε‖g‖∞.
    group (‖δ_G‖₂ ≤ ε on every patch×patch block per channel): ε·g_G/‖g_G‖₂, ε·Σ_G‖g_G‖₂.
    elastic (penalty form): ε·sign(g) + 2ε₂·g, ε‖g‖₁ + ε₂‖g‖₂²; its g·δ is ε‖g‖₁ + 2ε₂‖g‖₂²."""
    flat = _per_image(g)
    if norm == "linf":
        return eps * np.sign(g), eps * np.abs(flat).sum(1)
    if norm == "l2":
        size = np.linalg.norm(flat, axis=1)
        return eps * g / np.where(size > 0, size, 1).reshape(-1, 1, 1, 1), eps * size
    if norm == "l1":
        j = np.abs(flat).argmax(1)
        d = np.zeros_like(flat)
        d[np.arange(len(flat)), j] = eps * np.sign(flat[np.arange(len(flat)), j])
        return d.reshape(g.shape), eps * np.abs(flat).max(1)
    if norm == "elastic":
        return eps * np.sign(g) + 2 * eps2 * g, eps * np.abs(flat).sum(1) + eps2 * (flat**2).sum(1)
    if norm == "group":
        n, c, h, w = g.shape
        ph, pw = -(-h // patch), -(-w // patch)
        sizes = _group_norms(g, patch).reshape(n, c, ph, 1, pw, 1)
        per_pixel = np.broadcast_to(sizes, (n, c, ph, patch, pw, patch)).reshape(n, c, ph * patch, pw * patch)
        per_pixel = per_pixel[:, :, :h, :w]
        return eps * g / np.where(per_pixel > 0, per_pixel, 1), eps * sizes.reshape(n, -1).sum(1)
    raise OnnxcamError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def simple_gradient(ex, xm: np.ndarray, targets: np.ndarray, score: str, batch_size=None):
    """Logits and ∂score/∂x (model layout) per image."""
    name = ex.model.image_input
    graph = ex.session((name,), score)
    logits, grads = [], []
    for p in graph.stream(lambda r: xm[r], len(xm), targets, batch_rows(batch_size), [grad_name(name)]):
        logits.append(p.logits)
        grads.append(p.outputs[grad_name(name)])
    return np.concatenate(logits).astype(np.float64), np.concatenate(grads).astype(np.float64)


def worst_case(ex, x, targets, norm: str, eps: float, seed: int = 0, eps2: float | None = None, patch: int = 14,
               score: str = "logit", batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Per image: "predicted" = g·δ (first-order change of the score under the worst-case δ), "dual" = ε‖g‖_*,
    "actual" = score(x + δ) − score(x), "random" = score(x + δ_random) − score(x); "delta" = δ (model layout)."""
    if norm not in NORMS:
        raise OnnxcamError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    eps = positive("eps", eps)
    eps2 = eps if eps2 is None else positive("eps2", eps2)
    patch = positive("patch", patch, integer=True)
    imgs = images(ex, x)
    xm = imgs.to_model(imgs.nchw)
    t = check_targets(ex, xm, targets, batch_size)
    logits, g = simple_gradient(ex, xm, t, score, batch_size)
    g = g if imgs.layout == "NCHW" else g.transpose(0, 3, 1, 2)
    delta, dual = worst_direction(g, norm, eps, eps2, patch)
    z = np.random.default_rng(seed).standard_normal(g.shape)
    if norm == "elastic":  # the ℓ2 part of a random δ as large as the gradient's
        z *= (np.linalg.norm(_per_image(g), axis=1) / np.linalg.norm(_per_image(z), axis=1)).reshape(-1, 1, 1, 1)
    chance, _ = worst_direction(z, norm, eps, eps2, patch)
    n = len(xm)
    moved = np.concatenate([delta, chance]).astype(np.float32)

    def rows(r):
        return imgs.nchw[r % n] + moved[r]

    after = row_scores(ex, imgs, rows, 2 * n, np.tile(t, 2), batch_size, score)
    before = scores_of(logits, t, score)
    return {"predicted": (_per_image(g) * _per_image(delta)).sum(1), "dual": dual, "actual": after[:n] - before,
            "random": after[n:] - before, "delta": imgs.to_model(delta.astype(np.float32))}
