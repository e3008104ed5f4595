"""Score-CAM: gradient-free, so it works on models whose ops have no gradient rule yet."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register
from .arrays import NumpyArrays
from .cam import weighted
from .common import forward, image_size, to_grid
from .definition import EngineOnly
from .options import Options
from .run import cam_explanation


@dataclass(frozen=True)
class ScoreCamOptions(Options):
    pass


def scorecam(runner, x, targets, layer, o: ScoreCamOptions, batch_size: int):
    """w = softmax_k(y^c(x ⊙ norm(up(A^k)))), L = ReLU(Σ_k w_k A^k), as pytorch-grad-cam's ScoreCAM (logit score)."""
    logits, chosen, (acts,) = forward(runner, x, targets, batch_size, (layer.name,))
    acts = to_grid(acts, layer)
    n, k = acts.shape[:2]
    size, ops = image_size(runner.model, x), NumpyArrays(layer.rank)
    axis = runner.model.channel_axis
    session = runner.session((), "logit")

    def masked(rows):
        i, c = np.divmod(rows, k)
        out = []
        for a, b in zip(i, c):
            up = ops.resize(acts[a, b][None], size)[0]
            up = (up - up.min()) / (np.ptp(up) + 1e-7)
            out.append(x[a] * np.expand_dims(up, axis if axis < 0 else 0))
        return np.stack(out)

    scores = np.zeros((n, k))
    for chunk in session.stream(masked, n * k, np.repeat(chosen, k), batch_size, []):
        i, c = np.divmod(chunk.rows, k)
        scores[i, c] = chunk.logits[np.arange(len(chunk.rows)), chosen[i]]
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    cam = weighted(ops, weights.reshape(n, k, *[1] * ops.rank), acts)
    return cam_explanation(runner, x, "scorecam", layer, cam, logits, chosen)


register(EngineOnly("scorecam", ScoreCamOptions, scorecam, needs_layer=True))
