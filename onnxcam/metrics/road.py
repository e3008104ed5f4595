"""ROAD (Rong et al. 2022): remove pixels by noisy linear imputation, then score; pytorch-grad-cam's conventions.

At percentile p, MoRF keeps the pixels whose map value is below the p-th percentile of the map (so it removes the
most relevant 100 − p %), LeRF keeps those below the p-th percentile of 1 − map; each removed pixel becomes the
weighted mean of its 8 neighbours (1/6 edge, 1/12 corner neighbours, a sparse linear system) plus N(0, noise²)."""

from __future__ import annotations

import numpy as np

from ..errors import OnnxcamError
from .common import check_maps, check_targets, images, row_scores

PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
              ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def _sparse():
    try:
        from scipy.sparse import csc_matrix
        from scipy.sparse.linalg import splu
    except ImportError:
        raise OnnxcamError("ROAD solves a sparse linear system and needs scipy: pip install scipy") from None

    def solve(a, rhs):
        """A symmetric system (so are the weights): symmetric ordering, no pivoting; 1.2-1.7x spsolve at 224x224."""
        return splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0, options={"SymmetricMode": True}).solve(rhs)

    return csc_matrix, solve


def impute(img: np.ndarray, keep: np.ndarray, noise: float = 0.0, rng=None) -> np.ndarray:
    """(C, H, W) image with the pixels where keep is False replaced by the neighbour-weighted linear infill."""
    c, h, w = img.shape
    known = keep.reshape(-1).astype(bool)
    missing = np.flatnonzero(~known)
    flat = img.reshape(c, -1).astype(np.float64)
    out = flat.copy()
    if len(missing) == 0:
        return img.copy()
    if not known.any():  # nothing to interpolate from: the normalized-space mean (0)
        out[:] = 0.0
    else:
        csc_matrix, solve = _sparse()
        m = len(missing)
        var = np.full(h * w, -1)
        var[missing] = np.arange(m)
        r, col = np.divmod(missing, w)
        diag = np.ones(m)
        rhs = np.zeros((m, c))
        rows, cols, vals = [], [], []
        for (dr, dc), weight in NEIGHBOURS:
            rr, cc = r + dr, col + dc
            inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            diag[~inside] -= weight  # a border pixel averages over fewer neighbours
            eq = np.flatnonzero(inside)
            j = rr[inside] * w + cc[inside]
            has = known[j]
            rhs[eq[has]] -= weight * flat[:, j[has]].T
            rows.append(eq[~has])
            cols.append(var[j[~has]])
            vals.append(np.full((~has).sum(), weight))
        rows.append(np.arange(m))
        cols.append(np.arange(m))
        vals.append(-diag)
        a = csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, m))
        out[:, missing] = np.asarray(solve(a, rhs)).reshape(m, c).T
    if noise:
        out[:, missing] += noise * (rng or np.random.default_rng()).standard_normal((c, len(missing)))
    return out.reshape(c, h, w).astype(img.dtype)


def keep_mask(saliency: np.ndarray, percentile: float, most_relevant_first: bool) -> np.ndarray:
    """The pixels ROAD keeps at one percentile (pytorch-grad-cam's RemoveMostRelevantFirst / LeastRelevantFirst)."""
    m = saliency if most_relevant_first else 1 - saliency
    return m < np.percentile(m, percentile)


def road(ex, x, saliency, targets, percentiles=PERCENTILES, noise: float = 0.01, seed: int = 0,
         score: str = "prob", batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Per image: "morf" / "lerf" = target score after imputation, averaged over percentiles; "combined" =
    (lerf − morf)/2 (pytorch-grad-cam's ROADCombined; its per-metric values are these minus the clean score)."""
    imgs = images(ex, x)
    n = len(imgs.nchw)
    maps = check_maps(saliency, n, imgs.nchw.shape[2:]).astype(np.float32)  # heatmap precision, as pytorch-grad-cam
    pct = np.atleast_1d(np.asarray(percentiles, dtype=np.float64))
    if pct.ndim != 1 or len(pct) == 0 or not np.isfinite(pct).all() or (pct <= 0).any() or (pct >= 100).any():
        raise OnnxcamError(f"percentiles must be numbers in (0, 100); got {percentiles!r}")
    if not np.isfinite(noise) or noise < 0:
        raise OnnxcamError(f"noise must be a finite number >= 0; got {noise!r}")
    t = check_targets(ex, imgs.to_model(imgs.nchw), targets, batch_size)
    p = len(pct)

    def rows(r):
        i, rest = np.divmod(r, 2 * p)
        kind, j = np.divmod(rest, p)  # kind 0: MoRF, 1: LeRF
        return np.stack([impute(imgs.nchw[a], keep_mask(maps[a], pct[b], k == 0), noise,
                                np.random.default_rng([seed, a, k, b])) for a, k, b in zip(i, kind, j)])

    s = row_scores(ex, imgs, rows, n * 2 * p, np.repeat(t, 2 * p), batch_size, score).reshape(n, 2, p)
    morf, lerf = s[:, 0].mean(1), s[:, 1].mean(1)
    return {"morf": morf, "lerf": lerf, "combined": (lerf - morf) / 2}
