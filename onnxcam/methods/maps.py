"""From a method's raw map to the heatmap users see, written once for the engine and the export."""

from __future__ import annotations

import numpy as np

EPS = 1e-7  # pytorch-grad-cam's min-max epsilon, for maps of range >= 1
FLAT = 1e-6  # a range below this fraction of the map's magnitude is float32 round-off (a few ulps)
TINY = float(np.finfo(np.float32).tiny)


def normalize(ops, maps, over=None):
    """Per image (m − min) / (span + ε), pytorch-grad-cam's scale_cam_image order, with its ε = 1e-7 scaled down for
    maps whose range is below 1: fp16 models and saturated softmax scores give tiny but real maps. `over`: the values
    min and span are taken from, when not the maps themselves (see OnnxArrays.resize_normalized)."""
    low = ops.min(maps if over is None else over, ops.space, keepdims=True)
    shifted = maps - low
    span = ops.max(shifted if over is None else over - low, ops.space, keepdims=True)
    return shifted / (span + EPS * ops.clip(span, TINY, 1.0))


def cam_heatmap(ops, cam, size: tuple[int, ...]):
    """Normalize, resize (bi)linearly to the input's size, normalize again (pytorch-grad-cam rescales the resized map
    even for one layer, restoring the max of 1 that interpolation loses)."""
    return ops.resize_normalized(normalize(ops, cam), size)


def pixel_map(ops, attribution, channel_axis: int, reduce: str):
    """Per position Σ_c |a| (or max_c |a|)."""
    magnitude = ops.abs(attribution)
    return ops.sum(magnitude, channel_axis) if reduce == "sum" else ops.max(magnitude, channel_axis)


def flat_maps(maps: np.ndarray) -> np.ndarray:
    """Per image: True where the map is not finite or flat within float32 round-off of its own scale (no signal)."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        flat = np.where(np.isfinite(flat), flat, 0)
    high, low = flat.max(axis=1), flat.min(axis=1)
    return ~finite | (high - low <= FLAT * np.maximum(high, -low))
