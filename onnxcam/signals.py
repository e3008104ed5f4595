"""Inputs that are not photos: preprocessed samples in .npy files (signals, volumes, any tensor), and pictures of
their maps — a 1-D trace with its attribution underneath, the slices of a volume, a tensor's channels as an image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import OnnxcamError
from .image import overlay
from .opencv import cv2

NPY = ".npy"
WIDTH, TRACE_H, MAP_H = 960, 220, 90  # plot size in pixels
MAX_SLICES = 8


def is_array(path: Path) -> bool:
    return path.suffix.lower() == NPY


def _open(path: Path) -> np.ndarray:
    if not path.is_file():
        raise OnnxcamError(f"input not found: {path}")
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise OnnxcamError(f"cannot read {path} as a .npy array: {str(e).splitlines()[0][:120]}") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu":
        raise OnnxcamError(f"{path} holds {getattr(a, 'dtype', type(a).__name__)} data; save float32 samples")
    return a


def _samples(a: np.ndarray, model, path: Path) -> tuple[np.ndarray, bool]:
    """The array as (N, *input dims) and whether the file held a batch; a single-channel model's channel axis may
    be left out."""
    dims = tuple(model.input_shape[1:])
    if fits(a.shape, dims):
        return a[None], False
    if fits(a.shape[1:], dims):
        return a, True
    if model.channels == 1:
        c = 0 if model.channel_axis == 1 else len(dims) - 1
        bare, axis = dims[:c] + dims[c + 1 :], 1 if c == 0 else -1
        if fits(a.shape, bare):
            return np.expand_dims(a[None], axis), False
        if fits(a.shape[1:], bare):
            return np.expand_dims(a, axis), True
    want = ", ".join(str(d) for d in dims)
    raise OnnxcamError(f"{path} has shape {a.shape}; the model takes samples of shape ({want}), or a stack of them "
                       f"(N, {want}), preprocessed as the model expects")


def fits(shape: tuple, want: tuple) -> bool:
    """shape matches the dims `want` (symbolic dims match any size)."""
    return len(shape) == len(want) and all(not isinstance(w, int) or w == s for s, w in zip(shape, want))


def expand(paths: list[Path], model) -> list[Path]:
    """Each .npy file holding a stack of N samples becomes N items `name#k.npy` (k = 0..N−1); other paths stay."""
    items = []
    for p in paths:
        if not is_array(p) or not p.is_file():
            items.append(p)
            continue
        a, stacked = _samples(_open(p), model, p)
        items += [p.with_name(f"{p.stem}#{k}{NPY}") for k in range(len(a))] if stacked else [p]
    return items


def read_sample(item: Path, model) -> np.ndarray:
    """One float32 sample (input dims) of a .npy item (a file, or sample k of `name#k.npy`)."""
    stem, sep, k = item.stem.rpartition("#")
    path, index = (item.with_name(stem + NPY), int(k)) if sep and k.isdigit() else (item, 0)
    a, _ = _samples(_open(path), model, path)
    if index >= len(a):
        raise OnnxcamError(f"{path} has {len(a)} samples; there is no sample {index}")
    x = np.asarray(a[index], np.float32)
    if not np.isfinite(x).all():
        raise OnnxcamError(f"{item} contains NaN or infinite values")
    return x


def picture(x: np.ndarray, heatmap: np.ndarray, model) -> np.ndarray:
    """RGB uint8 of one sample and its heatmap: a plot for signals, slices for volumes, an overlay for images."""
    c = model.channel_axis if model.channel_axis < 0 else 0
    chans = np.moveaxis(x, c, 0)
    if model.rank == 1:
        return plot(chans, heatmap)
    if model.rank == 3:
        keep = np.unique(np.linspace(0, heatmap.shape[0] - 1, min(MAX_SLICES, heatmap.shape[0])).round().astype(int))
        return _enlarged(np.hstack([overlay(_gray(chans[:, d]), heatmap[d]) for d in keep]))
    return _enlarged(overlay(_gray(chans), heatmap))


def _enlarged(rgb: np.ndarray, height: int = 160) -> np.ndarray:
    """Small pictures scaled up by a whole factor (nearest), so that each position stays a visible block."""
    k = max(1, height // rgb.shape[0])
    return rgb if k == 1 else cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)


def _gray(chans: np.ndarray) -> np.ndarray:
    """(C, H, W) as an RGB view in [0, 1]: three channels as they are, others averaged; min-max scaled."""
    view = chans[:3].transpose(1, 2, 0) if len(chans) == 3 else np.repeat(chans.mean(0)[..., None], 3, -1)
    low, span = view.min(), np.ptp(view)
    return ((view - low) / (span if span > 0 else 1)).astype(np.float32)


def plot(trace: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """A trace (C, L) drawn as lines (up to three channels) above its heatmap (L,) as a JET strip and a curve."""
    length = trace.shape[-1]
    xs = np.linspace(8, WIDTH - 8, length)
    top = np.full((TRACE_H, WIDTH, 3), 255, np.uint8)
    for channel, color in zip(trace[:3], ((40, 40, 40), (30, 100, 200), (200, 90, 30))):
        low, span = channel.min(), np.ptp(channel)
        ys = TRACE_H - 10 - (channel - low) / (span if span > 0 else 1) * (TRACE_H - 20)
        cv2.polylines(top, [np.stack([xs, ys], 1).round().astype(np.int32)], False, color, 1, cv2.LINE_AA)
    columns = np.interp(np.arange(WIDTH), xs, heatmap)
    strip = cv2.applyColorMap(np.uint8(255 * np.clip(columns, 0, 1))[None].repeat(MAP_H // 3, 0), cv2.COLORMAP_JET)
    curve = np.full((MAP_H - MAP_H // 3, WIDTH, 3), 255, np.uint8)
    ys = curve.shape[0] - 4 - heatmap * (curve.shape[0] - 8)
    cv2.polylines(curve, [np.stack([xs, ys], 1).round().astype(np.int32)], False, (200, 30, 30), 1, cv2.LINE_AA)
    return np.vstack([top, cv2.cvtColor(strip, cv2.COLOR_BGR2RGB), curve])
