"""Faithfulness, stability and structure metrics of saliency maps, every model evaluation batched through ORT.

Definitions: reference/methods.md ("Evaluation metrics", "Structured gradient maps"). `x` is the preprocessed
input (model layout, or NCHW), `saliency` one (H, W) map per image at input resolution, `targets` one class per
image (None: top-1)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .perturbation import Curve, auc, blur, confidence_change, deletion, gaussian_kernel, insertion
from .pointing import boxes_to_masks, class_average, energy_pointing_game, pointing_game
from .road import impute, road
from .stability import max_sensitivity, step_convergence
from .structure import connected_components, gini, gradient_map, group_sparsity, top_k_mass
from .worstcase import NORMS, worst_case

__all__ = [
    "METRICS", "NORMS", "Curve", "auc", "blur", "boxes_to_masks", "class_average", "confidence_change",
    "connected_components", "deletion", "energy_pointing_game", "gaussian_kernel", "gini", "gradient_map",
    "group_sparsity", "impute", "insertion", "max_sensitivity", "pointing_game", "road", "step_convergence",
    "top_k_mass", "worst_case",
]


def _masks(kwargs: dict) -> np.ndarray:
    from ..errors import OnnxcamError

    if kwargs.get("masks") is None:
        raise OnnxcamError("pointing metrics need ground-truth masks: pass masks=(N, H, W) booleans")
    return kwargs["masks"]


# name -> f(ex, x, saliency, targets, **keywords) -> one number per image
METRICS: dict[str, Callable[..., np.ndarray]] = {
    "deletion": lambda ex, x, s, t, **k: deletion(ex, x, s, t, **k).auc,
    "insertion": lambda ex, x, s, t, **k: insertion(ex, x, s, t, **k).auc,
    "avg_drop": lambda ex, x, s, t, **k: confidence_change(ex, x, s, t, **k)[0],
    "increase": lambda ex, x, s, t, **k: confidence_change(ex, x, s, t, **k)[1],
    "road": lambda ex, x, s, t, **k: road(ex, x, s, t, **k)["combined"],
    "road_morf": lambda ex, x, s, t, **k: road(ex, x, s, t, **k)["morf"],
    "road_lerf": lambda ex, x, s, t, **k: road(ex, x, s, t, **k)["lerf"],
    "gini": lambda ex, x, s, t, **k: gini(s),
    "top5_mass": lambda ex, x, s, t, **k: top_k_mass(s, 0.05),
    "components": lambda ex, x, s, t, **k: connected_components(s, **k)[0],
    "pointing": lambda ex, x, s, t, **k: pointing_game(s, _masks(k), k.get("tolerance", 15)),
    "energy_pointing": lambda ex, x, s, t, **k: energy_pointing_game(s, _masks(k)),
}
