"""Faithfulness, stability and structure metrics of saliency maps, every model evaluation batched through ORT.

Definitions: reference/methods.md ("Evaluation metrics", "Structured gradient maps"). `x` is the preprocessed
input (model layout, or NCHW), `saliency` one (H, W) map per image at input resolution, `targets` one class per
image (None: top-1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .perturbation import Curve, auc, blur, confidence_change, deletion, gaussian_kernel, insertion
from .pointing import boxes_to_masks, class_average, energy_pointing_game, pointing_game, top_k_pointing
from .road import impute, road
from .stability import max_sensitivity, step_convergence
from .structure import connected_components, gini, gradient_map, group_sparsity, top_k_mass
from .worstcase import NORMS, worst_case

__all__ = [
    "METRICS", "NORMS", "Curve", "Metric", "auc", "blur", "boxes_to_masks", "class_average", "confidence_change",
    "connected_components", "deletion", "energy_pointing_game", "gaussian_kernel", "gini", "gradient_map",
    "group_sparsity", "impute", "insertion", "max_sensitivity", "pointing_game", "road", "step_convergence",
    "top_k_mass", "top_k_pointing", "worst_case",
]


def _masks(kwargs: dict) -> np.ndarray:
    from ..errors import OnnxcamError

    if kwargs.get("masks") is None:
        raise OnnxcamError("pointing metrics need ground-truth masks: pass masks=(N, H, W) booleans")
    return kwargs["masks"]


@dataclass(frozen=True)
class Metric:
    """A number per image: `group` names the metrics `onnxcam evaluate` computes together (None: not evaluated
    there, e.g. the pointing games, which need masks), `better` the good direction, and `fn(ex, x, saliency, targets,
    **keywords)` computes it directly (None for metrics that re-run a method)."""

    name: str
    group: str | None
    better: str  # "higher", "lower" or "" (descriptive)
    help: str
    fn: Callable[..., np.ndarray] | None = None


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("deletion", "deletion", "lower", "deletion AUC (RISE): target probability as the most salient pixels go to 0",
           lambda ex, x, s, t, **k: deletion(ex, x, s, t, **k).auc),
    Metric("insertion", "insertion", "higher", "insertion AUC (RISE): target probability as salient pixels replace a blur",
           lambda ex, x, s, t, **k: insertion(ex, x, s, t, **k).auc),
    Metric("avg-drop", "confidence", "lower", "average drop in confidence (%) on the map-weighted image (Grad-CAM++)",
           lambda ex, x, s, t, **k: confidence_change(ex, x, s, t, **k)[0]),
    Metric("increase", "confidence", "higher", "increase in confidence (% of images) on the map-weighted image",
           lambda ex, x, s, t, **k: confidence_change(ex, x, s, t, **k)[1]),
    Metric("road-morf", "road", "lower", "ROAD, most relevant first: mean target probability over percentiles",
           lambda ex, x, s, t, **k: road(ex, x, s, t, **k)["morf"]),
    Metric("road-lerf", "road", "higher", "ROAD, least relevant first",
           lambda ex, x, s, t, **k: road(ex, x, s, t, **k)["lerf"]),
    Metric("road", "road", "higher", "ROAD combined, (LeRF - MoRF) / 2",
           lambda ex, x, s, t, **k: road(ex, x, s, t, **k)["combined"]),
    Metric("max-sensitivity", "sensitivity", "lower",
           "largest map change under uniform input noise (radius 0.02, 10 samples)"),
    Metric("step-convergence", "convergence", "lower", "map change between m and 2m path steps (path methods only)"),
    Metric("gini", "structure", "higher", "Gini index of the map (1 = one pixel, 0 = constant)",
           lambda ex, x, s, t, **k: gini(s)),
    Metric("top-k", "structure", "higher", "fraction of the map's mass in its top 5 % pixels",
           lambda ex, x, s, t, **k: top_k_mass(s, 0.05)),
    Metric("components", "structure", "lower", "connected components of the map above 0.5",
           lambda ex, x, s, t, **k: connected_components(s, **k)[0]),
    Metric("component-size", "structure", "", "mean size (pixels) of those components",
           lambda ex, x, s, t, **k: connected_components(s, **k)[1]),
    Metric("pointing", None, "higher", "pointing game: the map's maximum falls in the mask (15 px tolerance)",
           lambda ex, x, s, t, **k: pointing_game(s, _masks(k), k.get("tolerance", 15))),
    Metric("energy-pointing", None, "higher", "share of the map's energy inside the mask",
           lambda ex, x, s, t, **k: energy_pointing_game(s, _masks(k))),
]}
