"""The result of explaining a batch of images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Explanation:
    """`cam` for layer methods, `attribution` for input-level ones; `valid[i]` is False where image i's map is
    constant or not finite (no gradient signal): its heatmap is all zero."""

    method: str
    heatmap: np.ndarray  # (N, H, W) float32 in [0, 1] at input resolution
    logits: np.ndarray  # the explained output at the input: (N, classes) scores for classifiers
    target: np.ndarray  # (N,) explained class per image (a target's category; −1 for a Seed)
    layer: str | None = None
    cam: np.ndarray | None = None  # (N, h, w) raw map at layer resolution
    attribution: np.ndarray | None = None  # like the input
    completeness_gap: np.ndarray | None = None  # (N,) Σ attribution − (score(x) − score(x'))
    extras: dict = field(default_factory=dict)
    valid: np.ndarray | None = None  # (N,) bool; None means every image

    def __post_init__(self):
        if self.valid is None:
            self.valid = np.ones(len(self.heatmap), bool)
