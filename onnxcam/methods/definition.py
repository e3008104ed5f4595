"""What a method is: its options, its rows, a contribution per row and a final reduction — or, for methods that
only the engine runs, one function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .options import Options


@dataclass(frozen=True)
class Single:
    """One row per image: the image itself."""


@dataclass(frozen=True)
class Path:
    """Rows x' + α_k (x − x') with quadrature weights w_k; `space="activation"` interpolates the layer instead."""

    alphas: np.ndarray
    weights: np.ndarray
    baseline: object
    space: str = "input"


@dataclass(frozen=True)
class Noise:
    """Rows x + σ·range(x)·ε_k, ε_k ~ N(0, 1), k < samples, each with weight 1/samples."""

    samples: int
    sigma: float
    seed: int


Rows = Single | Path | Noise


@dataclass
class Row:
    """One row's tensors, or a stack of them along leading axes: layer A and ∂score/∂A as (…, K, h, w) grids, or
    ∂score/∂x for input methods; `w` its weight; `prev` the path's previous row for pair methods."""

    g: object
    w: object
    a: object = None
    prev: Row | None = None


@dataclass
class Context:
    """What a final reduction may read besides the summed contributions: per image (N, ...)."""

    x: object
    image_axes: tuple[int, ...]  # the axes of one image: what a per-image sum reduces
    baseline: object = None
    a: object = None  # the layer at x, as a grid
    channels: int | None = None  # K of the layer
    grid: tuple[int, int] | None = None  # (h, w) of the layer


@dataclass(frozen=True)
class Gradient:
    """A gradient method, run by the engine on numpy chunks and emitted by the exporter as ONNX nodes.

    contribution(ops, row, options) → named tensors, summed over each image's rows (over pairs of consecutive rows
    when `pairs`); finish(ops, sums, context, options) → {"map": cam (N, h, w) or attribution, optional "total" (N,)
    for the completeness gap against score(x) − score(x'), and extras the engine reports}."""

    name: str
    options: type[Options]
    at: str  # "layer" or "input"
    rows: Callable[[Options], Rows]
    contribution: Callable
    finish: Callable
    pairs: bool = False
    reduce: str = "sum"  # input methods: how the heatmap reduces |attribution| over channels
    exportable: Callable[[Options], str | None] = lambda options: None  # why these options cannot be exported
    targets = "any"  # Σ w·y is differentiated like a class score

    @property
    def needs_layer(self) -> bool:
        return self.at == "layer"


@dataclass(frozen=True)
class EngineOnly:
    """A method the engine runs as one function run(runner, x, targets, layer, options, batch_size)."""

    name: str
    options: type[Options]
    run: Callable
    needs_layer: bool = False
    targets: str = "class"  # "class": class targets only; "none": needs no target (any output); "any"
