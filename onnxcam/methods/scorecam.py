"""Score-CAM: gradient-free, so it works on models whose ops have no gradient rule yet."""

from __future__ import annotations

import numpy as np

from ..opencv import cv2
from . import method
from .cam import relu
from .common import batch_rows, cam_explanation, image_size, to_grid


@method("scorecam")
def scorecam(ex, x, targets, layer, batch_size: int | None = None):
    """w = softmax_k(y^c(x ⊙ norm(up(A^k)))), L = ReLU(Σ_k w_k A^k), as pytorch-grad-cam's ScoreCAM (logit score)."""
    graph = ex.graph((), "logit", expose=(layer.name,))
    first = list(graph.stream(lambda r: x[r], len(x), targets, batch_rows(batch_size), [layer.name]))
    logits = np.concatenate([p.logits for p in first])
    acts = to_grid(np.concatenate([p.outputs[layer.name] for p in first]), layer)
    chosen = np.where(targets < 0, logits.argmax(-1), targets)
    n, k = acts.shape[:2]
    h, w = image_size(ex)

    def masked(rows):
        i, c = np.divmod(rows, k)
        out = []
        for a, b in zip(i, c):
            up = cv2.resize(acts[a, b].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            up = (up - up.min()) / (np.ptp(up) + 1e-7)
            out.append(x[a] * (up[None] if ex.model.layout == "NCHW" else up[..., None]))
        return np.stack(out)

    scores = np.zeros((n, k))
    for p in graph.stream(masked, n * k, np.repeat(chosen, k), batch_rows(batch_size), []):
        i, c = np.divmod(p.rows, k)
        scores[i, c] = p.logits[np.arange(len(p.rows)), chosen[i]]
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    cam = relu(np.einsum("nk,nkhw->nhw", weights, acts))
    return cam_explanation(ex, "scorecam", layer, cam, logits, chosen)
