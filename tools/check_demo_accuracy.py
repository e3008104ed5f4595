"""Measure the demo model's top-1/top-5 accuracy on a small ImageNet sample.

A sanity check that the exported ONNX model and the documented preprocessing
agree: a wrong mean/std, BGR/RGB swap or layout error shows up as a clear drop.
It uses only onnxruntime, OpenCV and NumPy, like the package itself.

    python tools/check_demo_accuracy.py [DATA_DIR] [--model PATH] [--mean M M M --std S S S]

DATA_DIR holds JPEGs and a ``labels.csv`` with columns ``file,class_index``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

# EfficientNet-Lite was trained with inception-style normalization,
# (x - 127) / 128 in TensorFlow; (x / 255 - 0.5) / 0.5 is the same to <0.5 %.
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)


def preprocess(path: Path, mean: np.ndarray, std: np.ndarray, resize: int = 256, crop: int = 224) -> np.ndarray:
    """Shorter side to ``resize``, center crop ``crop``, RGB, /255, normalize; CHW float32."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image {path}")
    h, w = bgr.shape[:2]
    scale = resize / min(h, w)
    size = (max(crop, round(w * scale)), max(crop, round(h * scale)))  # cv2 wants (width, height)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR  # INTER_AREA antialiases when shrinking
    img = cv2.resize(bgr, size, interpolation=interp)
    top, left = (img.shape[0] - crop) // 2, (img.shape[1] - crop) // 2
    img = cv2.cvtColor(img[top : top + crop, left : left + crop], cv2.COLOR_BGR2RGB)
    x = (img.astype(np.float32) / 255.0 - mean) / std
    return x.transpose(2, 0, 1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, nargs="?", default=Path("../shared/data/imagenet-sample"))
    parser.add_argument("--model", type=Path, default=Path("models/efficientnet_lite0.onnx"))
    parser.add_argument("--mean", type=float, nargs=3, default=DEFAULT_MEAN)
    parser.add_argument("--std", type=float, nargs=3, default=DEFAULT_STD)
    parser.add_argument("--batch", type=int, default=25)
    args = parser.parse_args()

    with open(args.data_dir / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([int(r["class_index"]) for r in rows])
    mean, std = np.array(args.mean, np.float32), np.array(args.std, np.float32)

    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    logits = []
    for i in range(0, len(rows), args.batch):
        batch = np.stack([preprocess(args.data_dir / r["file"], mean, std) for r in rows[i : i + args.batch]])
        logits.append(session.run(["logits"], {"input": batch})[0])
    top5 = np.argsort(-np.concatenate(logits), axis=1)[:, :5]

    n = len(rows)
    top1_hits = int((top5[:, 0] == labels).sum())
    top5_hits = int((top5 == labels[:, None]).any(axis=1).sum())
    print(f"images: {n}  mean: {tuple(args.mean)}  std: {tuple(args.std)}")
    print(f"top-1: {top1_hits}/{n}  top-5: {top5_hits}/{n}")


if __name__ == "__main__":
    main()
