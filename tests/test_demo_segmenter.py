"""The real-weights segmentation demo (models/selfie_segmentation.onnx, MediaPipe's weights) as the README runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_readme_segmentation_demo(tmp_path):
    """The person mask outlines the astronaut, and Grad-CAM puts more of its mass inside the mask than outside."""
    result = subprocess.run([sys.executable, "-m", "onnxcam", "explain", str(ROOT / "models" / "selfie_segmentation.onnx"),
                             str(ROOT / "models" / "samples" / "astronaut.jpg"), "--task", "segment", "-m", "gradcam",
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert record["explained"]["class"] == 0 and 0.3 < record["explained"]["pixels"] / 256**2 < 0.8
    import onnxcam
    from onnxcam.image import model_preprocessing, read_rgb

    ex = onnxcam.Explainer(ROOT / "models" / "selfie_segmentation.onnx", output="mask", device="cpu")
    x = model_preprocessing(ex.model, task="segment")(read_rgb(ROOT / "models" / "samples" / "astronaut.jpg"))[0]
    mask = ex.outputs_at(x[None])[0, 0] > 0.5
    heat = ex.explain(x[None], method="gradcam", target=onnxcam.targets.Segmentation(0, mask)).heatmap[0]
    assert heat[mask].mean() > 2 * heat[~mask].mean()
    saved = np.load(tmp_path / "astronaut_gradcam.npy")
    assert saved.ndim == 3 and np.isfinite(saved).all()
