"""Images in and out: reading and preprocessing photos, pytorch-grad-cam style overlays, montages."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import OnnxcamError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_UMASK = os.umask(0o022)
os.umask(_UMASK)
MAX_PIXELS = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))  # set by onnxcam/__init__.py before cv2 loads


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes a model input: resize the shorter side, center-crop, scale, normalize, layout."""

    size: tuple[int, int]  # (H, W) of the model input
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    layout: str = "NCHW"
    crop: float = 224 / 256  # fraction of the resized shorter side kept by the center crop (1 = no crop)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(model input CHW/HWC float32, the cropped RGB image in [0, 1] for overlays)."""
        h, w = self.size
        short = min(rgb.shape[:2])
        scale = min(h, w) / self.crop / short
        resized = cv2.resize(rgb, (max(w, round(rgb.shape[1] * scale)), max(h, round(rgb.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (resized.shape[0] - h) // 2, (resized.shape[1] - w) // 2
        view = resized[top : top + h, left : left + w].astype(np.float32) / 255
        x = (view - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return (x.transpose(2, 0, 1) if self.layout == "NCHW" else x), view


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise OnnxcamError(f"image not found: {p}")
    if p.stat().st_size == 0:
        raise OnnxcamError(f"image {p} is empty")
    try:  # IMREAD_COLOR: grayscale becomes RGB, an alpha channel is dropped, 16-bit becomes 8-bit
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV refuses images over OPENCV_IO_MAX_IMAGE_PIXELS (decompression bombs)
        raise OnnxcamError(f"cannot read image {p}: more than {MAX_PIXELS} pixels or a corrupt header") from None
    if bgr is None or bgr.size == 0:
        raise OnnxcamError(f"cannot read image {p} (not an image OpenCV can decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(rgb01: np.ndarray, heatmap: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """JET heatmap blended over the image, as pytorch-grad-cam's show_cam_on_image(use_rgb=True)."""
    heat = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * heatmap), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blend = (1 - image_weight) * (heat.astype(np.float32) / 255) + image_weight * rgb01
    return np.uint8(255 * blend / blend.max())


def montage(panels: list[np.ndarray], titles: list[str]) -> np.ndarray:
    """Panels side by side with a title strip above each."""
    out = []
    for panel, title in zip(panels, titles):
        strip = np.full((24, panel.shape[1], 3), 255, np.uint8)
        cv2.putText(strip, title, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        out.append(np.vstack([strip, panel]))
    return np.hstack(out)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a partial file.

    The temporary name .NAME.PID.XXXX.part tells a later run which leftovers belong to a killed process."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".part")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
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
