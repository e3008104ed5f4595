"""Localization against ground truth: the pointing game (Zhang et al. 2016) and its energy-based variant (Score-CAM)."""

from __future__ import annotations

import numpy as np

from ..errors import OnnxcamError
from ..opencv import cv2
from .common import check_maps


def _check_masks(saliency, masks) -> tuple[np.ndarray, np.ndarray]:
    maps = check_maps(saliency)
    m = np.asarray(masks)
    if m.shape != maps.shape:
        raise OnnxcamError(f"masks have shape {m.shape} but the maps {maps.shape}; pass one (H, W) mask per map")
    if m.dtype != bool:
        if m.dtype.kind not in "iuf" or not np.isin(m, (0, 1)).all():
            raise OnnxcamError("masks must be booleans (or 0/1): True on the ground-truth object")
        m = m.astype(bool)
    empty = np.flatnonzero(~m.reshape(len(m), -1).any(1))
    if len(empty):
        raise OnnxcamError(f"mask of image {empty[0]} is empty: every image needs a ground-truth region")
    return maps, m


def pointing_game(saliency, masks, tolerance: int = 15) -> np.ndarray:
    """1 where the map's maximum (first in raster order) lies within `tolerance` px (Euclidean) of the mask, else 0."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise OnnxcamError(f"tolerance must be an integer >= 0 (pixels); got {tolerance!r}")
    maps, m = _check_masks(saliency, masks)
    hits = np.zeros(len(maps))
    for i in range(len(maps)):
        y, x = np.unravel_index(np.argmax(maps[i]), maps[i].shape)
        # distance of every pixel to the nearest mask pixel (exact Euclidean)
        dist = cv2.distanceTransform((~m[i]).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        hits[i] = float(dist[y, x] <= tolerance)
    return hits


def energy_pointing_game(saliency, masks) -> np.ndarray:
    """Σ_{in mask} L / Σ L per image: the share of the map's energy on the object (maps must be >= 0)."""
    maps, m = _check_masks(saliency, masks)
    if (maps < 0).any():
        raise OnnxcamError("saliency has negative values; the energy pointing game needs maps >= 0")
    total = maps.reshape(len(maps), -1).sum(1)
    if (total == 0).any():
        raise OnnxcamError(f"map of image {int(np.flatnonzero(total == 0)[0])} is all zero: no energy to point with")
    return (maps * m).reshape(len(maps), -1).sum(1) / total


def top_k_pointing(saliency, masks, k: int) -> np.ndarray:
    """Per map (any rank): the share of the mass of its k largest |values| that lies inside the mask — how much of
    what the map points at hits the known ground truth (a map without information scores the mask's share)."""
    a = np.abs(np.asarray(saliency, np.float64))
    m = np.asarray(masks, bool)
    if a.shape != m.shape or a.ndim < 2:
        raise OnnxcamError(f"masks have shape {m.shape} but the maps {a.shape}; pass one mask per map")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= a[0].size:
        raise OnnxcamError(f"k must be an integer in 1..{a[0].size}; got {k!r}")
    a, m = a.reshape(len(a), -1), m.reshape(len(m), -1)
    top = np.argsort(-a, axis=1, kind="stable")[:, :k]
    mass = np.take_along_axis(a, top, 1)
    total = mass.sum(1)
    if (total == 0).any():
        raise OnnxcamError(f"map {int(np.flatnonzero(total == 0)[0])} is all zero: it points nowhere")
    return (mass * np.take_along_axis(m, top, 1)).sum(1) / total


def boxes_to_masks(boxes, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) masks from boxes: per image a list of (x0, y0, x1, y1), half-open pixel ranges clipped to the image."""
    h, w = size
    masks = np.zeros((len(boxes), h, w), bool)
    for i, image_boxes in enumerate(boxes):
        for box in image_boxes:
            if len(box) != 4 or not all(np.isfinite(box)):
                raise OnnxcamError(f"box {box!r} of image {i} is not four numbers (x0, y0, x1, y1)")
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            masks[i, max(y0, 0) : max(min(y1, h), 0), max(x0, 0) : max(min(x1, w), 0)] = True
    return masks


def class_average(values, classes) -> float:
    """Mean over classes of the per-class mean (the pointing game's accuracy, so frequent classes do not dominate)."""
    v, c = np.asarray(values, np.float64), np.asarray(classes)
    if v.shape != c.shape or v.ndim != 1 or len(v) == 0:
        raise OnnxcamError(f"values and classes must be two equal-length lists; got {v.shape} and {c.shape}")
    return float(np.mean([v[c == k].mean() for k in np.unique(c)]))
