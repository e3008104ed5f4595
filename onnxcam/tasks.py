"""What `onnxcam explain --task` explains per image, what it records and what it draws: the top-1 class of a
classifier, one detection of a detector, or a class's region of a segmentation map."""

from __future__ import annotations

import numpy as np

from . import outputs
from .errors import OnnxcamError, UsageError
from .opencv import cv2
from .targets import Detection, Segmentation, detection_layout, detections, nms

TASKS = ("classify", "detect", "segment")
GREEN = (0, 255, 0)


def targets(task: str, y: np.ndarray, paths, category: int | None, box: int, region,
            conf: float = 0.25) -> tuple[object, list[dict]]:
    """The target of every image (from the explained output y, (N, ...)) and what its record says about it."""
    if task == "classify":
        return category, [{} for _ in paths]
    found, records = [], []
    for path, yi in zip(paths, y):
        if task == "detect":
            target, record = _detection(path, yi, category, box, conf)
        else:
            target, record = _segment(path, yi, category, region)
        found.append(target)
        records.append(record)
    return found, records


def _detection(path, y: np.ndarray, category: int | None, box: int, conf: float) -> tuple[Detection, dict]:
    """The box-th kept detection (NMS on raw YOLO outputs; an NMS export's own rows) scoring at least `conf`."""
    boxes, scores = detections(y)
    if detection_layout(y) == "nms":
        kept = [i for i in np.argsort(-scores.max(1)) if scores[i].max() >= conf]
    else:
        kept = nms(boxes, scores, score_threshold=conf)
    listed = [{"box": [round(float(v), 2) for v in boxes[i]], "score": round(float(scores[i].max()), 5),
               "class": int(scores[i].argmax()), "anchor": int(i)} for i in kept]
    if box >= len(kept):
        raise OnnxcamError(f"{path}: --box {box} asks for detection {box}, but {len(kept)} detection(s) score at least "
                           f"--conf {conf:g}; explain another one, lower --conf or take another image")
    anchor = int(kept[box])
    chosen = int(scores[anchor].argmax()) if category is None else category
    return Detection(chosen, index=anchor), {"detections": listed, "explained": {**listed[box], "class": chosen}}


def _segment(path, y: np.ndarray, category: int | None, region) -> tuple[Segmentation, dict]:
    """Category (default: the class most pixels take) over `region` (x0, y0, x1, y1 in output pixels), or over the
    pixels the model gives that class; a one-channel output is a foreground probability (its pixels above 0.5)."""
    if y.ndim != 3:
        raise UsageError(f"--task segment needs an output (N, classes, H, W); this one is {y.shape} per image")
    labels = y.argmax(0) if len(y) > 1 else np.where(y[0] > 0.5, 0, -1)
    counts = np.bincount(labels[labels >= 0].ravel(), minlength=len(y))
    chosen = int(counts.argmax()) if category is None else category
    if region is None:
        mask = labels == chosen
    else:
        x0, y0, x1, y1 = (int(round(v)) for v in region)
        mask = np.zeros(labels.shape, bool)
        mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    if not mask.any():
        raise OnnxcamError(f"{path}: the mask of class {chosen} is empty; give --region or another --target")
    top = [{"class": int(c), "pixels": int(counts[c])} for c in np.argsort(-counts)[:5] if counts[c]]
    return Segmentation(chosen, mask), {"classes": top, "explained": {"class": chosen, "pixels": int(mask.sum())}}


def record(task: str, logits: np.ndarray, names, extra: dict) -> dict:
    if task == "classify":
        return {"top5": outputs.top5(logits, names)}
    return extra


def draw(panel: np.ndarray, target, record: dict) -> np.ndarray:
    """The explained box, or the outline of the explained mask, on an overlay (RGB uint8 at the input's size)."""
    panel = panel.copy()
    if isinstance(target, Segmentation):
        mask = cv2.resize(np.uint8(target.mask), panel.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(panel, contours, -1, GREEN, 1)
    elif isinstance(target, Detection):
        x0, y0, x1, y1 = (int(round(v)) for v in record["explained"]["box"])
        cv2.rectangle(panel, (x0, y0), (x1, y1), GREEN, 1)
    return panel
