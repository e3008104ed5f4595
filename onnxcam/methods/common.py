"""Engine helpers the methods share: forward rows, layer grids, baselines in the model's input space."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..layers import Layer
from ..runner import DEFAULT_BATCH, Weights
from .arrays import NumpyArrays


def to_grid(t: np.ndarray, layer: Layer) -> np.ndarray:
    """(N, K, *space) view of a layer tensor: channels-last maps transposed, class tokens dropped."""
    return NumpyArrays.grid(t, layer)


def forward(runner, x: np.ndarray, targets: np.ndarray, batch_size: int = DEFAULT_BATCH, expose: tuple[str, ...] = ()):
    """Forward rows only: logits, the explained class (top-1 where the target is −1) and the exposed tensors."""
    session = runner.session((), "logit", expose=expose)
    chunks = list(session.stream(lambda rows: x[rows], len(x), targets, batch_size, list(expose)))
    logits = np.concatenate([c.logits for c in chunks])
    exposed = [np.concatenate([c.outputs[name] for c in chunks]) for name in expose]
    return logits, chosen_classes(logits, targets), exposed


def chosen_classes(logits: np.ndarray, targets) -> np.ndarray:
    """The class each image explains: top-1 where the target is −1; a weighted target's own label."""
    if isinstance(targets, Weights):
        return targets.labels
    if logits.ndim != 2:  # not class scores: a target-free method (eigencam) on any output
        return np.full(len(logits), -1, np.int64)
    return np.where(targets < 0, logits.argmax(-1), targets)


def forward_top1(runner, x: np.ndarray, targets: np.ndarray, batch_size: int = DEFAULT_BATCH) -> tuple[np.ndarray, np.ndarray]:
    logits, chosen, _ = forward(runner, x, targets, batch_size)
    return logits, chosen


def black_image(model) -> np.ndarray:
    """A black input through the model's normalization: (0 − mean)/std, from the model's onnxcam.mean/std
    metadata, else ImageNet's for RGB images (the RSI-Grad-CAM authors' baseline), else 0."""
    from ..image import IMAGENET_MEAN, IMAGENET_STD, metadata_floats

    props = {p.key: p.value for p in model.proto.metadata_props}
    rgb = model.rank == 2 and model.channels == 3

    def floats(key, default):
        return np.asarray(metadata_floats(props, key) or default, np.float32)

    value = -floats("onnxcam.mean", IMAGENET_MEAN if rgb else (0.0,)) / floats("onnxcam.std", IMAGENET_STD if rgb else (1.0,))
    return value.reshape(-1, *[1] * model.rank) if model.channel_axis == 1 else value


def baseline_value(model, baseline) -> np.ndarray:
    """A (checked) baseline option as an array in the model's input space."""
    return np.asarray(black_image(model) if isinstance(baseline, str) else baseline, np.float32)


def baseline_like(baseline, x: np.ndarray, model) -> np.ndarray:
    """A baseline broadcast to x."""
    value = baseline_value(model, baseline)
    try:
        return np.broadcast_to(value, x.shape)
    except ValueError:
        raise UsageError(f"baseline of shape {value.shape} does not broadcast to input {x.shape}") from None


def image_size(model, x: np.ndarray) -> tuple[int, ...]:
    """The spatial size of the input ((H, W) for images): the model's, else the batch's (symbolic dims)."""
    if None not in model.image_size:
        return model.image_size
    return tuple(int(d) for d in (x.shape[2:] if model.channel_axis == 1 else x.shape[1:-1]))


def target_score(y: np.ndarray, image: int, targets, chosen: np.ndarray, score: str) -> float:
    """The explained score of one row of outputs: Σ w·y for a weighted target, else the class's logit or probability."""
    if isinstance(targets, Weights):
        return float((targets.w[image].astype(np.float64) * y).sum())
    return score_of(y, chosen[image], score)


def score_of(logits: np.ndarray, target: int, score: str) -> float:
    """The explained score from a row of logits: the logit, or its softmax probability."""
    if score == "logit":
        return float(logits[target])
    z = np.exp(logits - logits.max())
    return float(z[target] / z.sum())
