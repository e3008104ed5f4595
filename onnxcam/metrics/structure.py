"""How a map is spread: Gini sparsity, top-k % mass, group sparsity over patches, connected components."""

from __future__ import annotations

import numpy as np

from ..errors import OnnxcamError
from ..opencv import cv2


def _flat(maps, name: str = "maps") -> np.ndarray:
    """|maps| as (N, P) float64; maps: (N, ...) with N >= 1, finite, not all zero."""
    m = np.asarray(maps)
    if m.dtype.kind not in "fiub" or m.ndim < 2 or m.shape[0] == 0 or m[0].size == 0:
        raise OnnxcamError(f"{name} must be a numeric array (N, H, W) or (N, C, H, W) with N >= 1; got {m.shape}")
    if not np.isfinite(m).all():
        raise OnnxcamError(f"{name} contains NaN or infinite values")
    a = np.abs(m.reshape(len(m), -1).astype(np.float64))
    zero = np.flatnonzero(a.sum(1) == 0)
    if len(zero):
        raise OnnxcamError(f"{name} {zero[0]} is all zero: its sparsity is undefined")
    return a


def gradient_map(grad, clip: float = 99.0) -> np.ndarray:
    """Gong et al.'s display of a simple gradient (N, C, H, W): Σ_c |g|, clipped at its `clip` percentile, min-max."""
    g = np.asarray(grad)
    if g.ndim != 4:
        raise OnnxcamError(f"grad must have shape (N, C, H, W); got {g.shape}")
    if not 0 < clip <= 100:
        raise OnnxcamError(f"clip must be a percentile in (0, 100]; got {clip!r}")
    a = _flat(g, "grad").reshape(g.shape).sum(1)
    a = np.minimum(a, np.percentile(a.reshape(len(a), -1), clip, axis=1)[:, None, None])
    low = a.min((1, 2), keepdims=True)
    span = a.max((1, 2), keepdims=True) - low
    return ((a - low) / np.where(span > 0, span, 1)).astype(np.float32)


def gini(maps) -> np.ndarray:
    """Gini index of |map| (Hurley & Rickard): 1 − 2 Σ_k (c_(k)/‖c‖₁)(P − k + ½)/P, c ascending; one-hot → 1 − 1/P."""
    c = np.sort(_flat(maps), axis=1)
    p = c.shape[1]
    k = np.arange(1, p + 1)
    return 1 - 2 * ((c / c.sum(1, keepdims=True)) * ((p - k + 0.5) / p)).sum(1)


def top_k_mass(maps, k: float = 0.05) -> np.ndarray:
    """Share of Σ|map| held by its ⌈k·P⌉ largest pixels."""
    if isinstance(k, bool) or not isinstance(k, (int, float, np.floating)) or not 0 < k <= 1:
        raise OnnxcamError(f"k must be a fraction in (0, 1]; got {k!r}")
    a = _flat(maps)
    top = int(np.ceil(k * a.shape[1] - 1e-9))
    return -np.sort(-a, axis=1)[:, :top].sum(1) / a.sum(1)


def group_sparsity(grad, patch: int = 14) -> np.ndarray:
    """Σ_G ‖g_G‖₂ / ‖g‖₂ over patch×patch groups per channel (edge patches smaller): 1 = one group, √#groups = even."""
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1:
        raise OnnxcamError(f"patch must be an integer >= 1 (pixels); got {patch!r}")
    g = np.asarray(grad)
    if g.ndim == 3:
        g = g[:, None]
    if g.ndim != 4:
        raise OnnxcamError(f"grad must have shape (N, C, H, W) or (N, H, W); got {g.shape}")
    _flat(g, "grad")
    return _group_norms(g.astype(np.float64), patch).sum(1) / np.sqrt((g.astype(np.float64) ** 2).sum((1, 2, 3)))


def _group_norms(g: np.ndarray, patch: int) -> np.ndarray:
    """(N, groups) L2 norms of patch×patch blocks per channel (zero padding to whole patches)."""
    n, c, h, w = g.shape
    ph, pw = -(-h // patch), -(-w // patch)
    padded = np.zeros((n, c, ph * patch, pw * patch))
    padded[:, :, :h, :w] = g
    blocks = padded.reshape(n, c, ph, patch, pw, patch)
    return np.sqrt((blocks**2).sum((3, 5))).reshape(n, -1)


def connected_components(maps, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Number and mean size (pixels) of the 8-connected regions where the min-max scaled map exceeds `threshold`."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) or not 0 <= threshold < 1:
        raise OnnxcamError(f"threshold must be a number in [0, 1) (a fraction of the map's range); got {threshold!r}")
    m = np.asarray(maps)
    if m.ndim != 3:
        raise OnnxcamError(f"maps must have shape (N, H, W); got {m.shape}")
    _flat(m)
    m = m.astype(np.float64)
    low = m.min((1, 2), keepdims=True)
    span = m.max((1, 2), keepdims=True) - low
    scaled = (m - low) / np.where(span > 0, span, 1)
    count, size = np.zeros(len(m)), np.zeros(len(m))
    for i in range(len(m)):
        above = (scaled[i] > threshold).astype(np.uint8)
        labels, _, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
        count[i] = labels - 1
        size[i] = stats[1:, cv2.CC_STAT_AREA].mean() if labels > 1 else 0.0
    return count, size
