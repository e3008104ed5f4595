"""Images in and out: reading and preprocessing photos, pytorch-grad-cam style overlays, montages."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import OnnxcamError
from .imageheader import declared_size
from .opencv import cv2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_PIXELS = 1 << 27  # 134 M pixels, 400 MB of RGB: a small file can declare gigapixels


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes a model input: resize the shorter side, center-crop, scale, normalize, layout."""

    size: tuple[int, int]  # (H, W) of the model input
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    layout: str = "NCHW"
    crop: float = 224 / 256  # fraction of the resized shorter side kept by the center crop (1 = no crop)
    letterbox: bool = False  # fit the whole photo and pad with gray (ultralytics' LetterBox), instead of cropping

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(model input CHW/HWC float32, the cropped RGB image in [0, 1] for overlays)."""
        h, w = self.size
        if self.letterbox:
            return self._normalized(letterboxed(rgb, h, w))
        short = min(rgb.shape[:2])
        scale = min(h, w) / self.crop / short
        resized = cv2.resize(rgb, (max(w, round(rgb.shape[1] * scale)), max(h, round(rgb.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (resized.shape[0] - h) // 2, (resized.shape[1] - w) // 2
        return self._normalized(resized[top : top + h, left : left + w].astype(np.float32) / 255)

    def _normalized(self, view: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (view - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return (x.transpose(2, 0, 1) if self.layout == "NCHW" else x), view


def letterboxed(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    """The photo scaled to fit (h, w), centered on gray 114 (as ultralytics pads), in [0, 1]."""
    scale = min(h / rgb.shape[0], w / rgb.shape[1])
    nh, nw = max(1, round(rgb.shape[0] * scale)), max(1, round(rgb.shape[1] * scale))
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.full((h, w, 3), 114, np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out.astype(np.float32) / 255


def model_preprocessing(model, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                        layout: str | None = None, task: str = "classify") -> Preprocessing:
    """How `onnxcam explain` and `onnxcam serve` prepare photos for `model` (an onnxcam.Model): the given mean/std,
    else the model's onnxcam.mean/onnxcam.std metadata, else ImageNet's (for detectors 0 and 1: ultralytics' x/255).
    Classifiers get a center crop, detectors and segmenters the whole photo letterboxed."""
    props = {p.key: p.value for p in model.proto.metadata_props}
    detect = task == "detect"
    mean = mean or metadata_floats(props, "onnxcam.mean") or ((0.0,) if detect else IMAGENET_MEAN)
    std = std or metadata_floats(props, "onnxcam.std") or ((1.0,) if detect else IMAGENET_STD)
    if not all(1e-6 <= s <= 1e6 for s in std):
        raise OnnxcamError(f"--std must be in 1e-6..1e6 (images are scaled to 0..1); got {std}")
    if not all(abs(v) <= 1e6 for v in mean):
        raise OnnxcamError(f"--mean must be in -1e6..1e6 (images are scaled to 0..1); got {mean}")
    return Preprocessing(model.image_size, mean, std, layout or model.layout, letterbox=task != "classify")


def metadata_floats(props: dict, key: str) -> tuple[float, ...] | None:
    """onnxcam.mean/onnxcam.std metadata as 1 or 3 finite numbers (None when absent); anything else is refused."""
    if props.get(key) is None:
        return None
    try:
        values = tuple(float(v) for v in props[key].replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 3) or not all(np.isfinite(values)):
        raise OnnxcamError(f"the model's metadata {key}={props[key][:40]!r} is not 1 or 3 finite numbers; "
                           f"give --{key.split('.')[1]}")
    return values


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise OnnxcamError(f"image not found: {p}")
    return decode_rgb(p.read_bytes(), str(p))


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """RGB uint8 from an encoded image file, with the header's pixel count checked before decoding (files and requests)."""
    if not data:
        raise OnnxcamError(f"image {name} is empty")
    size = declared_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise OnnxcamError(f"image {name} declares {size[0]}x{size[1]} pixels, more than {MAX_PIXELS}; "
                           "downscale it first")
    try:  # IMREAD_COLOR: grayscale becomes RGB, an alpha channel is dropped, 16-bit becomes 8-bit
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # formats whose header onnxcam does not read still meet OpenCV's own cap (2^30 pixels)
        raise OnnxcamError(f"cannot read image {name}: too many pixels or a corrupt header") from None
    if bgr is None or bgr.size == 0:
        raise OnnxcamError(f"cannot read image {name} (not an image OpenCV can decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(rgb01: np.ndarray, heatmap: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """JET heatmap blended over the image, as pytorch-grad-cam's show_cam_on_image(use_rgb=True)."""
    heat = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * heatmap), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blend = (1 - image_weight) * (heat.astype(np.float32) / 255) + image_weight * rgb01
    return np.uint8(255 * blend / blend.max())


def montage(panels: list[np.ndarray], titles: list[str], vertical: bool = False) -> np.ndarray:
    """Panels side by side (or one above the other) with a title strip above each."""
    out = []
    for panel, title in zip(panels, titles):
        strip = np.full((24, panel.shape[1], 3), 255, np.uint8)
        cv2.putText(strip, title, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        out.append(np.vstack([strip, panel]))
    return np.vstack(out) if vertical else np.hstack(out)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a partial file.

    The temporary name .NAME.PID.XXXX.part tells a later run which leftovers belong to a killed process;
    mode 0o666 lets the process's umask give the file the usual permissions."""
    tmp = os.path.join(path.parent, f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OnnxcamError("could not encode a PNG")
    return buf.tobytes()
