"""ultralytics YOLOv8 detect and seg models, exported by ultralytics itself, against pytorch-grad-cam's maps of the
same torch modules (tests/fixtures/yolo/, made by tools/make_yolo_oracles.py in the fixture venv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnxcam
from onnxcam.targets import Detection, Seed

FIXTURES = Path(__file__).parent / "fixtures" / "yolo"
TOL = 1e-3


@pytest.fixture(scope="module", params=["det", "seg"])
def yolo(request):
    data = dict(np.load(FIXTURES / f"yolov8n_{request.param}.npz"))
    return FIXTURES / f"yolov8n_{request.param}.onnx", data


@pytest.mark.parametrize("key, method", [("gradcam", "gradcam"), ("layercam", "layercam")])
def test_detection_targets_equal_pytorch_grad_cam(yolo, key, method):
    """One layer, the Detection target: where pytorch-grad-cam's map is all zero (every position's weighted sum is
    negative), onnxcam's is too and the image is marked not valid."""
    path, d = yolo
    ex = onnxcam.Explainer(path, output="output0", input_size=(64, 64), layer=str(d["layers"][0]), device="cpu")
    targets = [Detection(int(c), index=int(a)) for c, a in zip(d["categories"], d["anchors"])]
    got = ex.explain(d["x"], method=method, target=targets)
    assert got.valid.tolist() == (np.ptp(d[key], axis=(1, 2)) > 0).tolist()
    assert np.abs(got.heatmap - d[key]).max() <= TOL


@pytest.mark.parametrize("key, method", [("gradcam_multi", "gradcam"), ("layercam_multi", "layercam")])
def test_three_layers_equal_pytorch_grad_cam(yolo, key, method):
    """The neck's three outputs at once, the detection score ×1e4 as a Seed (see tools/make_yolo_oracles.py)."""
    path, d = yolo
    ex = onnxcam.Explainer(path, output="output0", input_size=(64, 64), layer=list(d["layers"]), device="cpu")
    seeds = []
    for c, a in zip(d["categories"], d["anchors"]):
        w = np.zeros(d["weights"].shape, np.float32)
        w[4 + c, a] = 1e4
        seeds.append(Seed(w))
    got = ex.explain(d["x"], method=method, target=seeds)
    assert np.abs(got.heatmap - d[key]).max() <= TOL


def test_seed_target_equals_pytorch_grad_cam(yolo):
    path, d = yolo
    ex = onnxcam.Explainer(path, output="output0", input_size=(64, 64), layer=str(d["layers"][2]), device="cpu")
    got = ex.explain(d["x"], method="gradcam", target=Seed(d["weights"]))
    assert np.abs(got.heatmap - d["gradcam_seed"]).max() <= TOL


def test_eigencam_equals_pytorch_grad_cam(yolo):
    path, d = yolo
    got = onnxcam.Explainer(path, output="output0", input_size=(64, 64), layer=str(d["layers"][0]), device="cpu").explain(d["x"],
                                                                                                  method="eigencam")
    assert np.abs(got.heatmap - d["eigencam"]).max() <= TOL


def test_auto_layers_feed_the_heads(yolo):
    path, d = yolo
    ex = onnxcam.Explainer(path, output="output0", input_size=(64, 64), device="cpu")
    branches = 3 if "seg" in path.name else 2  # boxes, classes (and the seg head's mask coefficients), per level
    assert len(ex.explained_layers) == 3 * branches and all("/model.22/" in x.name for x in ex.explained_layers)
    r = ex.explain(d["x"], method="gradcam", target=[Detection(int(c), index=int(a))
                                                     for c, a in zip(d["categories"], d["anchors"])])
    assert r.valid.all() and r.heatmap.shape == (2, 64, 64)


def test_explain_task_detect_lists_detections_and_draws_the_box(tmp_path):
    import cv2
    from click.testing import CliRunner

    from onnxcam.cli import main

    d = dict(np.load(FIXTURES / "yolov8n_det.npz"))
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.uint8(255 * d["x"][0].transpose(1, 2, 0)[:, :, ::-1]))
    args = ["explain", str(FIXTURES / "yolov8n_det.onnx"), str(photo), "--task", "detect", "--conf", "0.001",
            "--size", "64", "-m", "gradcam", "-m", "eigencam", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    import json

    record = json.loads((tmp_path / "out" / "results.jsonl").read_text().splitlines()[0])
    found = record["detections"]
    assert found and record["explained"] == found[0] and found == sorted(found, key=lambda f: -f["score"])
    assert all(f["score"] >= 0.001 for f in found) and record["target"] == found[0]["class"]
    assert (tmp_path / "out" / "photo_gradcam.png").is_file()
    far = CliRunner().invoke(main, [*args, "--box", "999", "--out", str(tmp_path / "other")])
    assert far.exit_code == 1 and "--box 999" in far.output and "Traceback" not in far.output
