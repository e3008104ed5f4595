"""Ablation-CAM: each channel's weight is the score lost when the network runs on from the layer without it
(gradient-free; pytorch-grad-cam's AblationCAM)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register
from .arrays import NumpyArrays
from .cam import weighted
from .common import forward, target_score, to_grid
from .definition import EngineOnly
from .options import Options
from .run import cam_explanation

ABLATED_BELOW = 1e7  # a layer that can be negative: channels go this far below its minimum (pytorch-grad-cam's value)


@dataclass(frozen=True)
class AblationCamOptions(Options):
    pass


def ablationcam(runner, x, targets, layer, o: AblationCamOptions, batch_size: int):
    """w_k = (y − y_k) / y with y_k the score when channel k of A is 0 (or far below A's minimum where A can be
    negative); L = ReLU(Σ_k w_k A^k)."""
    logits, chosen, (acts,) = forward(runner, x, targets, batch_size, (layer.name,))
    grid = to_grid(acts, layer)
    n, k = grid.shape[:2]
    axis = 0 if layer.channels_first else -1  # the channel axis of one image's layer tensor

    def score(y: np.ndarray, image: int) -> float:
        return target_score(y, image, targets, chosen, "logit")

    def ablated(rows: np.ndarray) -> np.ndarray:
        out = acts[rows // k].copy()
        for j, (i, c) in enumerate(zip(*np.divmod(rows, k))):
            low = acts[i].min()
            np.moveaxis(out[j], axis, 0)[c] = 0 if low == 0 else low - ABLATED_BELOW
        return out

    scores = np.zeros((n, k))
    session = runner.session((), "logit", tail=layer.name)
    for chunk in session.stream(ablated, n * k, np.full(n * k, -1), batch_size, []):
        for r, y in zip(chunk.rows, chunk.logits):
            scores[r // k, r % k] = score(y, r // k)
    y0 = np.array([[score(logits[i], i)] for i in range(n)])
    ops = NumpyArrays(layer.rank)
    cam = weighted(ops, ((y0 - scores) / y0).reshape(n, k, *[1] * ops.rank), grid)
    return cam_explanation(runner, x, "ablationcam", layer, cam, logits, chosen)


register(EngineOnly("ablationcam", AblationCamOptions, ablationcam, needs_layer=True, targets="any"))
