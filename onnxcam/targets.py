"""What to explain in a model's output: a class, a region of a segmentation map, one detection, or any weighting.

Every target reduces to weights w over the explained output y (one image's, batch axis dropped): the explained score
is Σ w·y. `Class` stays a class index (its one-hot is built inside the graph, top-1 when −1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UsageError


@dataclass(frozen=True)
class Class:
    """Class `category` of a classifier's scores (N, classes): what an int target means."""

    category: int


@dataclass(frozen=True)
class Seed:
    """Explain Σ weights·y: weights shaped like one image's output (shared by all images)."""

    weights: object
    category: int = -1

    def weights_for(self, y: np.ndarray) -> np.ndarray:
        w = np.asarray(self.weights, np.float32)
        try:
            return np.broadcast_to(w, y.shape)
        except ValueError:
            raise UsageError(f"Seed weights of shape {w.shape} do not broadcast to the output {y.shape}") from None


@dataclass(frozen=True)
class Segmentation:
    """Σ of category's scores over a boolean mask of the output's (H, W): pytorch-grad-cam's SemanticSegmentationTarget.
    The output is (classes, H, W) per image."""

    category: int
    mask: object

    def weights_for(self, y: np.ndarray) -> np.ndarray:
        mask = np.asarray(self.mask, bool)
        if y.ndim != 3 or mask.shape != y.shape[1:]:
            raise UsageError(f"a Segmentation mask must be a boolean (H, W) mask of the output's {y.shape[1:]} "
                             f"(output per image {y.shape}); got {mask.shape}")
        _check_category(self.category, y.shape[0])
        w = np.zeros(y.shape, np.float32)
        w[self.category] = mask
        return w


@dataclass(frozen=True)
class Detection:
    """The class score of one detection in a YOLO-style raw output: ultralytics v8/v11 (4 + C, A) or v5 (A, 5 + C),
    boxes (cx, cy, w, h) in input pixels; or, for exports with NMS inside, (K, 6) rows (x0, y0, x1, y1, score, class).

    The detection is anchor (or row) `index`, or the anchor whose box best overlaps `box` (x0, y0, x1, y1), as
    pytorch-grad-cam's FasterRCNNBoxScoreTarget matches boxes by IoU."""

    category: int
    box: tuple[float, float, float, float] | None = None
    index: int | None = None

    def weights_for(self, y: np.ndarray) -> np.ndarray:
        layout = detection_layout(y)
        w = np.zeros(y.shape, np.float32)
        anchor = self.anchor(y)
        if layout == "v8":
            _check_category(self.category, y.shape[0] - 4)
            w[4 + self.category, anchor] = 1
        elif layout == "v5":
            _check_category(self.category, y.shape[1] - 5)
            w[anchor, 5 + self.category] = 1
        else:
            w[anchor, 4] = 1
        return w

    def anchor(self, y: np.ndarray) -> int:
        boxes, _ = detections(y)
        if (self.index is None) == (self.box is None):
            raise UsageError("a Detection needs exactly one of index (the anchor or row) and box (x0, y0, x1, y1)")
        if self.index is not None:
            if not 0 <= self.index < len(boxes):
                raise UsageError(f"detection index {self.index} out of range: the output has {len(boxes)} anchors")
            return int(self.index)
        return int(np.argmax(iou(np.asarray(self.box, np.float64), boxes)))


def detection_layout(y: np.ndarray) -> str:
    """"v8" (4 + C, A), "v5" (A, 5 + C) or "nms" (K, 6), from one image's output."""
    if y.ndim != 2:
        raise UsageError(f"a Detection target needs a 2-D output per image (YOLO raw or NMS rows); got {y.shape}")
    if y.shape[1] == 6 and y.shape[0] <= 1000:  # NMS keeps at most ultralytics' 300 rows; a v5 with C = 1 has 1000s
        return "nms"
    if y.shape[0] > 4 and y.shape[0] < y.shape[1]:
        return "v8"
    if y.shape[1] > 5:
        return "v5"
    raise UsageError(f"output per image {y.shape} is not a YOLO layout ((4 + C, A), (A, 5 + C) or (K, 6))")


def detections(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (x0, y0, x1, y1) and class scores (A, C) of one image's output, whatever the layout."""
    layout = detection_layout(y)
    if layout == "nms":
        scores = np.zeros((len(y), int(y[:, 5].max()) + 1 if len(y) else 1))
        scores[np.arange(len(y)), y[:, 5].astype(int)] = y[:, 4]
        return y[:, :4].astype(np.float64), scores
    rows = y.T if layout == "v8" else y
    cx, cy, w, h = (rows[:, i].astype(np.float64) for i in range(4))
    scores = rows[:, 4:] if layout == "v8" else rows[:, 5:] * rows[:, 4:5]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), scores


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45, score_threshold: float = 0.25,
        limit: int = 300) -> list[int]:
    """Greedy per-class non-maximum suppression (as ultralytics' default): kept anchor indices, best first."""
    best, cls = scores.max(1), scores.argmax(1)
    order = [int(i) for i in np.argsort(-best) if best[i] >= score_threshold]
    kept: list[int] = []
    for i in order:
        same = [k for k in kept if cls[k] == cls[i]]
        if not same or iou(boxes[i], boxes[same]).max() <= iou_threshold:
            kept.append(i)
            if len(kept) == limit:
                break
    return kept


def _check_category(category: int, classes: int) -> None:
    if not 0 <= category < classes:
        raise UsageError(f"category {category} out of range: the output has {classes} classes (0..{classes - 1})")


WEIGHTED = (Seed, Segmentation, Detection)
