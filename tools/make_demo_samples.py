"""Write the demo's sample photographs and show what the demo model sees in them.

The repository must not ship photographs of unclear origin, so the samples
come from scikit-image's bundled data, whose docstrings mark them CC0:
``chelsea`` (a cat, by Stefan van der Walt) and ``coffee`` (a coffee cup,
by Rachel Michetti). Run from the repository root after the model export::

    python tools/make_demo_samples.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from check_demo_accuracy import DEFAULT_MEAN, DEFAULT_STD, preprocess  # same folder
from skimage import data

SAMPLES = {"cat.jpg": data.chelsea, "coffee.jpg": data.coffee}
JPEG_QUALITY = 90


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("models/samples"))
    parser.add_argument("--model", type=Path, default=Path("models/efficientnet_lite0.onnx"))
    parser.add_argument("--classes", type=Path, default=Path("models/imagenet_classes.txt"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    classes = args.classes.read_text(encoding="utf-8").splitlines()
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    mean, std = np.array(DEFAULT_MEAN, np.float32), np.array(DEFAULT_STD, np.float32)
    for name, load in SAMPLES.items():
        path = args.out_dir / name
        rgb = load()
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        (logits,) = session.run(["logits"], {"input": preprocess(path, mean, std)[None]})
        probs = np.exp(logits[0] - logits[0].max())
        probs /= probs.sum()
        top5 = np.argsort(-probs)[:5]
        print(f"{path} ({rgb.shape[1]}x{rgb.shape[0]}, {path.stat().st_size} bytes)")
        for i in top5:
            print(f"  {i:4d} {classes[i]:<28} {probs[i]:.3f}")


if __name__ == "__main__":
    main()
