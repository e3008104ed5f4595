""""No information" maps (a seeded random map, a centered Gaussian): what a metric scores without the model's help."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..explanation import Explanation
from . import register
from .arrays import NumpyArrays
from .common import forward_top1, image_size
from .definition import EngineOnly
from .maps import normalize
from .options import Options, option, seed


@dataclass(frozen=True)
class RandomOptions(Options):
    seed: int = seed()
    cell: int = option(1, "Pixels per side of a random block.", low=1, high=1 << 16)


def random_map(runner, x, targets, layer, o: RandomOptions, batch_size: int) -> Explanation:
    """Uniform noise per pixel (or per `cell`×`cell` block): the chance level of every metric.

    Seeded by `seed` and the image's bytes: the same image always gets the same map, whatever the batch, and
    two images (or an image and its noisy copy) get unrelated maps."""
    logits, chosen = forward_top1(runner, x, targets, batch_size)
    h, w = image_size(runner.model, x)
    cell = o.cell
    keys = [zlib.crc32(np.ascontiguousarray(image).tobytes()) for image in x]
    coarse = [np.random.default_rng([o.seed, k]).random((-(-h // cell), -(-w // cell))) for k in keys]
    maps = np.stack([np.kron(c, np.ones((cell, cell)))[:h, :w] for c in coarse])
    return Explanation(method="random", heatmap=normalize(NumpyArrays, maps).astype(np.float32), logits=logits,
                       target=chosen, extras={"seed": o.seed})


@dataclass(frozen=True)
class CenterOptions(Options):
    sigma: float = option(0.25, "Width of the Gaussian, a fraction of the image's shorter side.", kind="float", low=0,
                          strict=True)


def center_map(runner, x, targets, layer, o: CenterOptions, batch_size: int) -> Explanation:
    """exp(−r²/(2(σ·min(H, W))²)) around the image center: photographers' bias, no look at the model."""
    logits, chosen = forward_top1(runner, x, targets, batch_size)
    h, w = image_size(runner.model, x)
    yy, xx = np.mgrid[:h, :w]
    r2 = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2
    one = np.exp(-r2 / (2 * (o.sigma * min(h, w)) ** 2))
    maps = normalize(NumpyArrays, np.repeat(one[None], len(x), axis=0))
    return Explanation(method="center", heatmap=maps.astype(np.float32), logits=logits, target=chosen)


register(EngineOnly("random", RandomOptions, random_map, targets="none"))
register(EngineOnly("center", CenterOptions, center_map, targets="none"))
