"""Build tests/fixtures/yolo/: ultralytics YOLOv8 detect and seg models (ultralytics' own yaml at a tiny width, seeded
weights, exported by ultralytics' own exporter) and pytorch-grad-cam's maps of their torch modules, the oracle of
tests/test_yolo.py. Runs in the fixture venv of tools/make_wild_fixtures.py, plus grad-cam:

    /work/wildenv/bin/pip install grad-cam
    OMP_NUM_THREADS=1 YOLO_OFFLINE=1 /work/wildenv/bin/python tools/make_yolo_oracles.py

Per model: NAME.onnx and NAME.npz with the input x, the explained detections (category, anchor: the best-scoring
anchor of a class per image), the layer tensors (the neck's outputs that the Detect head reads, model.15/18/21)
and pytorch-grad-cam's heatmaps: GradCAM and LayerCAM with the detection score y[4 + c, a] as target on model.15,
and with 1e4·y[4 + c, a] on all three layers; GradCAM with a seeded random weighting Σ w·y; EigenCAM (no target).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "yolo"
SIZE, CLASSES, WIDTH = 64, 3, 0.0625
sys.path.insert(0, str(ROOT / "tools"))
from make_wild_fixtures import ultralytics_export  # noqa: E402


def build(kind: str):
    name = {"det": "yolov8", "seg": "yolov8-seg"}[kind]
    return ultralytics_export(f"v8/{name}.yaml", f"{name.replace('yolov8', 'yolov8n')}.yaml",
                              {"nc": CLASSES, "scales": {"n": [0.33, WIDTH, 1024]}}, Path(tempfile.mkdtemp()),
                              imgsz=SIZE, dynamic=True)


def neck_tensors(proto) -> list[str]:
    """The ONNX names of model.15/18/21's outputs (each C2f ends in cv2's SiLU: Sigmoid then Mul)."""
    return [[n.output[0] for n in proto.graph.node if n.name.startswith(f"/model.{i}/cv2/act/") and n.op_type == "Mul"][-1]
            for i in (15, 18, 21)]


def oracle(kind: str) -> None:
    import onnx
    from pytorch_grad_cam import EigenCAM, GradCAM, LayerCAM

    model, onnx_path = build(kind)
    proto = onnx.load(onnx_path)
    proto.ir_version = min(proto.ir_version, 10)
    module = model.model
    def torch_out(x: torch.Tensor) -> torch.Tensor:
        """The decoded (N, 4 + C [+ 32 mask coefficients], A) tensor: ONNX's output0."""
        out = model(x)
        while isinstance(out, (tuple, list)):
            out = out[0]
        return out

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return torch_out(x)

    head = Head().eval()
    x = np.random.default_rng(0).random((2, 3, SIZE, SIZE), dtype=np.float32)
    with torch.no_grad():
        y = torch_out(torch.from_numpy(x)).numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(["output0"], {"images": x})[0] - y).max() <= 1e-3 * np.abs(y).max(), "not the module"
    categories = np.array([1, 2])
    anchors = np.array([int(y[i, 4 + c].argmax()) for i, c in enumerate(categories)])
    det = [lambda out, c=c, a=a: out[4 + c, a] for c, a in zip(categories, anchors)]
    # several layers: the score ×1e4, so every layer's map has a range ≥ 1, where pytorch-grad-cam's absolute 1e-7 in
    # its min-max and onnxcam's relative one agree (averaged layers keep that difference; one layer is renormalized)
    scaled = [lambda out, c=c, a=a: 1e4 * out[4 + c, a] for c, a in zip(categories, anchors)]
    weights = np.random.default_rng(1).standard_normal(y.shape[1:]).astype(np.float32)
    seed = [lambda out: (out * torch.from_numpy(weights)).sum()] * 2
    maps = {}
    for label, cls, layers, targets in (("gradcam", GradCAM, [15], det), ("layercam", LayerCAM, [15], det),
                                        ("gradcam_multi", GradCAM, [15, 18, 21], scaled),
                                        ("layercam_multi", LayerCAM, [15, 18, 21], scaled),
                                        ("gradcam_seed", GradCAM, [21], seed), ("eigencam", EigenCAM, [15], None)):
        with cls(head, [module[i] for i in layers]) as cam:
            maps[label] = cam(torch.from_numpy(x), targets)
    onnx.save(proto, OUT / f"yolov8n_{kind}.onnx")
    np.savez_compressed(OUT / f"yolov8n_{kind}.npz", x=x, categories=categories, anchors=anchors, weights=weights,
                        layers=np.array(neck_tensors(proto)), **maps)
    print(kind, onnx_path.stat().st_size, {k: (float(v.min()), float(v.max())) for k, v in maps.items()})


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for kind in sys.argv[1:] or ("det", "seg"):
        oracle(kind)
