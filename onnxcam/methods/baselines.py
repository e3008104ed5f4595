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
    """Uniform noise per position (or per block of `cell` positions a side): the chance level of every metric.

    Seeded by `seed` and the image's bytes: the same image always gets the same map, whatever the batch, and
    two images (or an image and its noisy copy) get unrelated maps."""
    logits, chosen = forward_top1(runner, x, targets, batch_size)
    size, cell = image_size(runner.model, x), o.cell
    keys = [zlib.crc32(np.ascontiguousarray(image).tobytes()) for image in x]
    coarse = [np.random.default_rng([o.seed, k]).random([-(-d // cell) for d in size]) for k in keys]
    crop = tuple(slice(d) for d in size)
    maps = np.stack([np.kron(c, np.ones((cell,) * len(size)))[crop] for c in coarse])
    return Explanation(method="random", heatmap=normalize(NumpyArrays(len(size)), maps).astype(np.float32),
                       logits=logits, target=chosen, extras={"seed": o.seed})


@dataclass(frozen=True)
class CenterOptions(Options):
    sigma: float = option(0.25, "Width of the Gaussian, a fraction of the image's shorter side.", kind="float", low=0,
                          strict=True)


def center_map(runner, x, targets, layer, o: CenterOptions, batch_size: int) -> Explanation:
    """exp(−r²/(2(σ·min(H, W))²)) around the image center: photographers' bias, no look at the model."""
    logits, chosen = forward_top1(runner, x, targets, batch_size)
    size = image_size(runner.model, x)
    r2 = sum((g - (d - 1) / 2) ** 2 for g, d in zip(np.indices(size), size))
    one = np.exp(-r2 / (2 * (o.sigma * min(size)) ** 2))
    maps = normalize(NumpyArrays(len(size)), np.repeat(one[None], len(x), axis=0))
    return Explanation(method="center", heatmap=maps.astype(np.float32), logits=logits, target=chosen)


register(EngineOnly("random", RandomOptions, random_map, targets="none"))
register(EngineOnly("center", CenterOptions, center_map, targets="none"))
