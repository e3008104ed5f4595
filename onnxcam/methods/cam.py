"""The Grad-CAM family: one forward and one backward pass to the layer, then a weighting of A by G."""

from __future__ import annotations

import numpy as np

from . import method
from .common import cam_explanation, layer_pass


def relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0)


def weighted(w: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """ReLU(Σ_k w_k A^k)."""
    return relu(np.einsum("nk,nkhw->nhw", w, acts))


def gradcam_weights(acts, grads):
    return grads.mean(axis=(2, 3))


def gradcam_pp_weights(acts, grads):
    """α = G² / (2G² + Σ_ab A · G³ + 1e-6), 0 where G = 0; w = Σ_ij ReLU(G) α."""
    g2 = grads**2
    alpha = g2 / (2 * g2 + acts.sum(axis=(2, 3), keepdims=True) * g2 * grads + 1e-6)
    alpha = np.where(grads != 0, alpha, 0)
    return (relu(grads) * alpha).sum(axis=(2, 3))


def xgradcam_weights(acts, grads):
    return (grads * acts / (acts.sum(axis=(2, 3), keepdims=True) + 1e-7)).sum(axis=(2, 3))


def _pooled(name: str, weights):
    @method(name)
    def explain(ex, x, targets, layer, score: str = "logit", batch_size: int | None = None):
        logits, chosen, acts, grads = layer_pass(ex, x, targets, layer, score, batch_size)
        return cam_explanation(ex, name, layer, weighted(weights(acts, grads), acts), logits, chosen)

    return explain


gradcam = _pooled("gradcam", gradcam_weights)
gradcam_pp = _pooled("gradcam++", gradcam_pp_weights)
xgradcam = _pooled("xgradcam", xgradcam_weights)


@method("layercam")
def layercam(ex, x, targets, layer, score: str = "logit", batch_size: int | None = None):
    """Σ_k ReLU(G^k) ⊙ A^k, element-wise (no pooling of the gradients)."""
    logits, chosen, acts, grads = layer_pass(ex, x, targets, layer, score, batch_size)
    return cam_explanation(ex, "layercam", layer, relu((relu(grads) * acts).sum(1)), logits, chosen)


@method("hirescam")
def hirescam(ex, x, targets, layer, score: str = "logit", batch_size: int | None = None):
    """Σ_k G^k ⊙ A^k: the gradient kept at full resolution."""
    logits, chosen, acts, grads = layer_pass(ex, x, targets, layer, score, batch_size)
    return cam_explanation(ex, "hirescam", layer, relu((grads * acts).sum(1)), logits, chosen)
