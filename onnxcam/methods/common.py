"""Shared pieces: layer tensors as grids, pytorch-grad-cam's map post-processing, option checks."""

from __future__ import annotations

import numpy as np

from ..autodiff import grad_name
from ..engine import DEFAULT_BATCH, Explanation
from ..errors import OnnxcamError
from ..layers import Layer
from ..opencv import cv2

MAX_STEPS = 100_000
EPS = 1e-7  # pytorch-grad-cam's min-max epsilon, for maps of range >= 1
FLAT = 1e-6  # a range below this fraction of the map's magnitude is float32 round-off (a few ulps)


def to_grid(t: np.ndarray, layer: Layer) -> np.ndarray:
    """(N, K, h, w) view of a layer tensor: channels-last maps transposed, class tokens dropped."""
    if layer.layout == "NCHW":
        return t
    if layer.layout == "NTD":
        h, w = layer.grid
        t = t[:, layer.class_tokens :, :].reshape(t.shape[0], h, w, t.shape[2])
    return t.transpose(0, 3, 1, 2)


def positive_int(name: str, value, high: int = MAX_STEPS) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= high:
        raise OnnxcamError(f"{name} must be an integer in 1..{high}; got {value!r}")
    return int(value)


def batch_rows(batch_size) -> int:
    return positive_int("batch_size", DEFAULT_BATCH if batch_size is None else batch_size, 4096)


def black_image(model) -> np.ndarray:
    """A black image through the model's normalization: (0 − mean)/std, from the model's onnxcam.mean/std
    metadata, else ImageNet's (the RSI-Grad-CAM authors' baseline)."""
    from ..image import IMAGENET_MEAN, IMAGENET_STD, metadata_floats

    props = {p.key: p.value for p in model.proto.metadata_props}

    def floats(key, default):
        return np.asarray(metadata_floats(props, key) or default, np.float32)

    value = -floats("onnxcam.mean", IMAGENET_MEAN) / floats("onnxcam.std", IMAGENET_STD)
    return value.reshape(-1, 1, 1) if model.layout == "NCHW" else value


def baseline_value(model, baseline):
    """A baseline option as an array: a number, an array in the model's input space, or "black"."""
    if isinstance(baseline, str):
        if baseline != "black":
            raise OnnxcamError(f"baseline must be a number, an array or 'black'; got {baseline!r}")
        return black_image(model)
    return baseline


def baseline_like(baseline, x: np.ndarray, model=None) -> np.ndarray:
    """A baseline broadcast to x (scalar, array in the model's input space, or "black")."""
    try:
        b = np.broadcast_to(np.asarray(baseline_value(model, baseline), np.float32), x.shape)
    except ValueError:
        raise OnnxcamError(f"baseline of shape {np.shape(baseline)} does not broadcast to input {x.shape}") from None
    if not np.isfinite(b).all():
        raise OnnxcamError("baseline contains NaN or infinite values")
    return b


def normalize_maps(cam: np.ndarray) -> np.ndarray:
    """Per image (cam − min) / (max − min + ε), pytorch-grad-cam's scale_cam_image order, with its ε = 1e-7 scaled
    down for maps whose range is below 1: fp16 models and saturated softmax scores give tiny but real maps."""
    low = cam.min(axis=(1, 2), keepdims=True)
    span = (cam - low).max(axis=(1, 2), keepdims=True)
    return (cam - low) / (span + EPS * np.clip(span, np.finfo(np.float32).tiny, 1))


def constant_maps(maps: np.ndarray) -> list[int]:
    """Images whose map is not finite or flat within float32 round-off of its own scale (no gradient signal)."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    finite = np.isfinite(flat).all(axis=1)
    scale = np.abs(np.where(np.isfinite(flat), flat, 0)).max(axis=1)
    return [i for i in range(len(flat)) if not finite[i] or np.ptp(flat[i]) <= FLAT * scale[i]]


def heatmaps(cam: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Normalize, resize (OpenCV INTER_LINEAR) to the input's (H, W), normalize again; a constant map is an error.

    The second normalization is pytorch-grad-cam's (BaseCAM.aggregate_multi_layers rescales the resized map even
    for one layer): it restores max = 1 lost to interpolation."""
    flat = constant_maps(cam)
    if flat:
        why = "not finite" if not np.isfinite(cam[flat[0]]).all() else "no signal"
        raise OnnxcamError(
            f"{method} map of image {flat[0]} is constant ({why}): "
            "the gradients vanish at this layer for this class; try another layer, target or method"
        )
    scaled = normalize_maps(cam.astype(np.float32))
    h, w = size
    resized = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in scaled])
    return normalize_maps(resized).astype(np.float32)


def image_size(ex) -> tuple[int, int]:
    h, w = ex.model.image_size
    return h, w


def cam_explanation(ex, method: str, layer: Layer, cam: np.ndarray, logits, targets, **extra) -> Explanation:
    return Explanation(
        method=method, heatmap=heatmaps(cam, image_size(ex), method), logits=logits, target=targets,
        layer=layer.name, cam=cam.astype(np.float32), **extra,
    )


def layer_stream(ex, layer: Layer, score: str, make_rows, n_rows: int, targets, batch_size):
    """Chunks of (rows, logits, A, ∂score/∂A) for inputs built lazily by make_rows(row indices)."""
    graph = ex.graph((layer.name,), score, expose=(layer.name,))
    names = [layer.name, grad_name(layer.name)]
    for p in graph.stream(make_rows, n_rows, targets, batch_rows(batch_size), names):
        yield p.rows, p.logits, p.outputs[names[0]], p.outputs[names[1]]


def layer_pass(ex, x: np.ndarray, targets: np.ndarray, layer: Layer, score: str, batch_size=None):
    """One forward + partial backward per image: logits, targets, and A and ∂score/∂A as grids."""
    chunks = list(layer_stream(ex, layer, score, lambda rows: x[rows], len(x), targets, batch_size))
    logits, acts, grads = (np.concatenate([c[k] for c in chunks]) for k in (1, 2, 3))
    return logits, np.where(targets < 0, logits.argmax(-1), targets), to_grid(acts, layer), to_grid(grads, layer)


def layer_forward(ex, x: np.ndarray, targets: np.ndarray, layer: Layer, batch_size=None, grid: bool = True):
    """Forward rows only: logits, the explained class (top-1 where the target is −1) and A, for path and noise
    methods, whose own rows bring every gradient they need."""
    graph = ex.graph((), "logit", expose=(layer.name,))
    chunks = list(graph.stream(lambda rows: x[rows], len(x), targets, batch_rows(batch_size), [layer.name]))
    logits = np.concatenate([p.logits for p in chunks])
    acts = np.concatenate([p.outputs[layer.name] for p in chunks])
    return logits, np.where(targets < 0, logits.argmax(-1), targets), to_grid(acts, layer) if grid else acts


def forward_top1(ex, x: np.ndarray, targets: np.ndarray, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the explained class per image (top-1 where the target is −1): forward rows only, no backward pass."""
    graph = ex.graph((), "logit")
    logits = np.concatenate([p.logits for p in graph.stream(lambda r: x[r], len(x), targets, batch_rows(batch_size), [])])
    return logits, np.where(targets < 0, logits.argmax(-1), targets)


def score_of(logits: np.ndarray, target: int, score: str) -> float:
    """The explained score from a row of logits: the logit, or its softmax probability."""
    if score == "logit":
        return float(logits[target])
    z = np.exp(logits - logits.max())
    return float(z[target] / z.sum())
