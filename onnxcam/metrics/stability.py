"""Stability of a method: max-sensitivity to input noise (Captum's sensitivity_max) and path-step convergence."""

from __future__ import annotations

import numpy as np

from ..errors import OnnxcamError
from .common import check_targets, images, positive


def _relative_change(changed: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """‖changed − reference‖_F / ‖reference‖_F per row (÷1 where the reference is all zero, as Captum)."""
    d = (changed.astype(np.float64) - reference.astype(np.float64)).reshape(len(changed), -1)
    ref = np.linalg.norm(reference.astype(np.float64).reshape(len(reference), -1), axis=1)
    return np.linalg.norm(d, axis=1) / np.where(ref == 0, 1, ref)


def perturbations(shape: tuple, samples: int, radius: float, seed: int) -> np.ndarray:
    """Uniform noise in [−radius, radius], `samples` consecutive rows per image (Captum's repeat_interleave order)."""
    return np.random.default_rng(seed).uniform(-radius, radius, (shape[0] * samples, *shape[1:])).astype(np.float32)


def max_sensitivity(ex, x, targets, method: str, radius: float = 0.02, samples: int = 10, seed: int = 0,
                    **options) -> np.ndarray:
    """max_k ‖H(x + δ_k) − H(x)‖_F / ‖H(x)‖_F over `samples` uniform δ_k (L∞ radius, input space); H = heatmap in
    [0, 1], explaining the same class as at x. Lower is more stable."""
    radius = positive("radius", radius)
    samples = positive("samples", samples, integer=True)
    imgs = images(ex, x)
    xm = imgs.to_model(imgs.nchw)
    t = check_targets(ex, xm, targets, options.get("batch_size"))
    base = ex.explain(xm, method=method, target=t, **options).heatmap
    noisy = np.repeat(xm, samples, axis=0) + perturbations(xm.shape, samples, radius, seed)
    moved = ex.explain(noisy, method=method, target=np.repeat(t, samples), **options).heatmap
    return _relative_change(moved, np.repeat(base, samples, axis=0)).reshape(len(xm), samples).max(1)


def raw_map(res) -> np.ndarray:
    """The un-normalized map of an Explanation: input-level attribution, else the layer CAM, else the heatmap."""
    for m in (res.attribution, res.cam, res.heatmap):
        if m is not None:
            return m
    raise OnnxcamError(f"{res.method} returned no map")


def step_convergence(ex, x, targets, method: str, steps: int, **options) -> np.ndarray:
    """‖M̂_m − M̂_2m‖_F per image, M̂ = M/‖M‖_F the raw map (attribution or CAM) with m and 2m path steps: unit
    norms, because Integrated Grad-CAM's map is a sum over steps and grows with m."""
    steps = positive("steps", steps, integer=True)
    if "steps" in options:
        raise OnnxcamError("pass the step count as `steps`, not among the method options")
    imgs = images(ex, x)
    xm = imgs.to_model(imgs.nchw)
    t = check_targets(ex, xm, targets, options.get("batch_size"))
    coarse = raw_map(ex.explain(xm, method=method, target=t, steps=steps, **options))
    fine = raw_map(ex.explain(xm, method=method, target=t, steps=2 * steps, **options))
    return _relative_change(unit(coarse), unit(fine))


def unit(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its Frobenius norm (all-zero maps stay zero)."""
    m = maps.astype(np.float64).reshape(len(maps), -1)
    norm = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.where(norm == 0, 1, norm)).reshape(maps.shape)
