"""What every metric shares: input/map/target checks with one-line errors, and batched scoring of perturbed rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import OnnxcamError
from ..runner import batch_rows


@dataclass
class Images:
    """The images as (N, C, H, W) float32 whatever the model's layout, and the way back to the model's layout."""

    nchw: np.ndarray
    layout: str

    def to_model(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.layout == "NCHW" else np.ascontiguousarray(rows.transpose(0, 2, 3, 1))


def refuse_non_images(model) -> None:
    """The metrics perturb pixels of (N, C, H, W) images; signal and volume models get a one-line error."""
    if model.rank != 2:
        raise OnnxcamError(f"the metrics score image models (N, C, H, W); this one takes {model.layout} input")


def images(ex, x) -> Images:
    """x in the model's layout (or NCHW for a channels-last model), checked like Explainer.explain checks it."""
    x = np.asarray(x)
    if x.ndim >= 1 and x.shape[0] == 0:
        raise OnnxcamError("no images to evaluate: the input batch is empty")
    layout = ex.model.layout
    refuse_non_images(ex.model)
    if layout == "NHWC" and x.ndim == 4 and _fits(ex, x.transpose(0, 2, 3, 1)) and not _fits(ex, x):
        x = x.transpose(0, 2, 3, 1)  # NCHW given to a channels-last model
    x = ex.check_input(x)
    return Images(x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 3, 1, 2)), layout)


def _fits(ex, x: np.ndarray) -> bool:
    return all(not isinstance(e, int) or e == a for e, a in zip(ex.model.input_shape[1:], x.shape[1:]))


def check_maps(maps, n: int | None = None, size: tuple[int, int] | None = None, name: str = "saliency") -> np.ndarray:
    """(N, H, W) finite maps as float64; N and (H, W) must match the images when given."""
    m = np.asarray(maps)
    if m.dtype.kind not in "fiub":
        raise OnnxcamError(f"{name} must be a numeric array; got dtype {m.dtype}")
    if m.ndim != 3 or m.shape[0] == 0:
        raise OnnxcamError(f"{name} must have shape (N, H, W) with N >= 1; got {m.shape}")
    if n is not None and m.shape[0] != n:
        raise OnnxcamError(f"{name} has {m.shape[0]} maps for {n} images; pass one (H, W) map per image")
    if size is not None and tuple(m.shape[1:]) != tuple(size):
        raise OnnxcamError(f"{name} maps are {m.shape[1]}x{m.shape[2]} but the images are {size[0]}x{size[1]}; "
                           "pass maps at input resolution (Explanation.heatmap)")
    if not np.isfinite(m).all():
        raise OnnxcamError(f"{name} contains NaN or infinite values")
    return m.astype(np.float64)


def check_targets(ex, x_model: np.ndarray, targets, batch_size=None) -> np.ndarray:
    """One class per image; None (or −1 entries) means the model's top-1 class for that image."""
    n = len(x_model)
    t = np.full(n, -1, np.int64) if targets is None else np.atleast_1d(np.asarray(targets))
    if t.dtype.kind not in "iu" or t.ndim != 1 or len(t) != n:
        raise OnnxcamError(f"targets must be {n} ints (one per image); got {targets!r}")
    classes = ex.num_classes
    if (t < -1).any() or (classes and (t >= classes).any()):
        raise OnnxcamError(f"target {t.tolist()} out of range: classes are 0..{(classes or 0) - 1}")
    t = t.astype(np.int64)
    if (t < 0).any():
        logits = forward(ex, lambda r: x_model[r], n, t, batch_size)
        t = np.where(t < 0, logits.argmax(-1), t)
    return t


def forward(ex, make_rows: Callable, n_rows: int, row_targets: np.ndarray, batch_size=None) -> np.ndarray:
    """Logits of rows built lazily by make_rows(indices) in the model's layout, `batch_size` rows per run."""
    graph = ex.session((), "logit")
    out = None
    for p in graph.stream(make_rows, n_rows, np.asarray(row_targets, np.int64), batch_rows(batch_size), []):
        if out is None:
            out = np.empty((n_rows, p.logits.shape[-1]), np.float64)
        out[p.rows] = p.logits
    return out


def scores_of(logits: np.ndarray, targets: np.ndarray, score: str = "prob") -> np.ndarray:
    """The target's softmax probability (or raw logit) per row, in float64."""
    if score not in ("prob", "logit"):
        raise OnnxcamError(f"score must be 'prob' or 'logit'; got {score!r}")
    picked = logits[np.arange(len(logits)), targets]
    if score == "logit":
        return picked
    top = logits.max(-1)
    return np.exp(picked - top) / np.exp(logits - top[:, None]).sum(-1)


def row_scores(ex, imgs: Images, make_rows: Callable, n_rows: int, row_targets, batch_size=None,
               score: str = "prob") -> np.ndarray:
    """Scores of NCHW rows built lazily: make_rows(indices) → (B, C, H, W)."""
    row_targets = np.asarray(row_targets, np.int64)
    logits = forward(ex, lambda r: imgs.to_model(make_rows(r)), n_rows, row_targets, batch_size)
    return scores_of(logits, row_targets, score)


def positive(name: str, value, integer: bool = False) -> float:
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, bool) or not ok or not np.isfinite(value) or value <= 0:
        kind = "an integer >= 1" if integer else "a finite number > 0"
        raise OnnxcamError(f"{name} must be {kind}; got {value!r}")
    return int(value) if integer else float(value)
