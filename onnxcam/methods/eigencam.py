"""EigenCAM: the first principal component of the layer's activations — no gradient and no target, the usual choice
for detectors (pytorch-grad-cam's EigenCAM)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register
from .common import forward, to_grid
from .definition import EngineOnly
from .options import Options
from .run import cam_explanation


@dataclass(frozen=True)
class EigenCamOptions(Options):
    pass


def projection(acts: np.ndarray) -> np.ndarray:
    """Per image: the positions' activation vectors, centered, projected on their first right singular vector."""
    out = []
    for a in np.nan_to_num(acts):
        flat = a.reshape(a.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        out.append((flat @ vt[0]).reshape(a.shape[1:]))
    return np.float32(out)


def eigencam(runner, x, targets, layer, o: EigenCamOptions, batch_size: int):
    logits, chosen, (acts,) = forward(runner, x, targets, batch_size, (layer.name,))
    cam = np.maximum(projection(to_grid(acts, layer).astype(np.float32)), 0)
    return cam_explanation(runner, x, "eigencam", layer, cam, logits, chosen)


register(EngineOnly("eigencam", EigenCamOptions, eigencam, needs_layer=True, targets="none"))
