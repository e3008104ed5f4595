""""No information" maps (a seeded random map, a centered Gaussian): what a metric scores without the model's help."""

from __future__ import annotations

import zlib

import numpy as np

from ..engine import Explanation
from ..errors import OnnxcamError
from . import method
from .common import forward_top1, image_size, normalize_maps


def _size(ex, x) -> tuple[int, int]:
    h, w = image_size(ex)
    if h is None or w is None:  # a model with symbolic spatial dims: take them from the input
        h, w = x.shape[2:4] if ex.model.layout == "NCHW" else x.shape[1:3]
    return int(h), int(w)


@method("random")
def random_map(ex, x, targets, layer, seed: int = 0, cell: int = 1):
    """Uniform noise per pixel (or per `cell`×`cell` block): the chance level of every metric.

    Seeded by `seed` and the image's bytes: the same image always gets the same map, whatever the batch, and
    two images (or an image and its noisy copy) get unrelated maps."""
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or cell < 1:
        raise OnnxcamError(f"cell must be an integer >= 1 (pixels per random block); got {cell!r}")
    logits, chosen = forward_top1(ex, x, targets)
    h, w = _size(ex, x)
    keys = [zlib.crc32(np.ascontiguousarray(image).tobytes()) for image in x]
    coarse = [np.random.default_rng([seed, k]).random((-(-h // cell), -(-w // cell))) for k in keys]
    maps = np.stack([np.kron(c, np.ones((cell, cell)))[:h, :w] for c in coarse])
    return Explanation(method="random", heatmap=normalize_maps(maps).astype(np.float32), logits=logits, target=chosen,
                       extras={"seed": seed})


@method("center")
def center_map(ex, x, targets, layer, sigma: float = 0.25):
    """exp(−r²/(2(σ·min(H, W))²)) around the image center: photographers' bias, no look at the model."""
    if not np.isfinite(sigma) or sigma <= 0:
        raise OnnxcamError(f"sigma must be a finite number > 0 (a fraction of the image side); got {sigma!r}")
    logits, chosen = forward_top1(ex, x, targets)
    h, w = _size(ex, x)
    yy, xx = np.mgrid[:h, :w]
    r2 = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2
    one = np.exp(-r2 / (2 * (sigma * min(h, w)) ** 2))
    maps = normalize_maps(np.repeat(one[None], len(x), axis=0))
    return Explanation(method="center", heatmap=maps.astype(np.float32), logits=logits, target=chosen)
