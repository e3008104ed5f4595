"""Targets beyond class scores, against pytorch-grad-cam and Captum on the torch modules themselves.

A YOLO-v8-layout detector (raw output (N, 4 + C, A), SiLU, two heads) explained with Detection and Seed targets,
single and multi-layer, and with EigenCAM; torchvision's FCN-ResNet50 (seeded weights) with Segmentation targets
(pytorch-grad-cam's SemanticSegmentationTarget); IG with a Seed target against Captum IG on the same target function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import zoo
from captum.attr import IntegratedGradients
from pytorch_grad_cam import EigenCAM, GradCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from zoo import OUTPUT

import onnxcam
from onnxcam.targets import Detection, Seed, Segmentation

TOL = 1e-3  # heatmaps in [0, 1]


class TinyYolo(torch.nn.Module):
    """Two feature levels (16×16 and 8×8 at 64×64 input), a 1×1 head on each, boxes (cx, cy, w, h) and sigmoid class
    scores concatenated as ultralytics v8 does: (N, 4 + C, A)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        conv = lambda i, o, s: torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, s, 1), torch.nn.SiLU())  # noqa: E731
        self.stem = torch.nn.Sequential(conv(3, 8, 2), conv(8, 16, 2))
        self.p3, self.p4 = conv(16, 16, 1), conv(16, 32, 2)
        self.h3, self.h4 = torch.nn.Conv2d(16, 4 + classes, 1), torch.nn.Conv2d(32, 4 + classes, 1)

    def forward(self, x):
        a = self.p3(self.stem(x))
        b = self.p4(a)
        out = torch.cat([self.h3(a).flatten(2), self.h4(b).flatten(2)], 2)
        return torch.cat([32 + 8 * out[:, :4], torch.sigmoid(out[:, 4:])], 1)


def export(model: torch.nn.Module, size: int, path) -> onnx.ModelProto:
    """The legacy export with a dynamic batch, input `input` and output `logits` (zoo.INPUT, zoo.OUTPUT)."""
    return onnx.load(zoo.export_module(model, torch.randn(2, 3, size, size), "legacy", Path(path)))


def layer_of(proto: onnx.ModelProto, prefix: str, op: str) -> str:
    return [n.output[0] for n in proto.graph.node if n.name.startswith(prefix) and n.op_type == op][-1]


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyYolo().eval()
    path = tmp_path_factory.mktemp("yolo") / "tiny_yolo.onnx"
    proto = export(model, 64, path)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    layers = {"p3": layer_of(proto, "/p3/", "Mul"), "p4": layer_of(proto, "/p4/", "Mul")}
    return model, path, x, layers


def pgc(cls, model, modules, x, targets):
    with cls(model, modules) as cam:
        return cam(torch.from_numpy(x), targets)


ANCHORS = [5, 300]  # one anchor on each level


@pytest.mark.parametrize("method, cls", [("gradcam", GradCAM), ("layercam", LayerCAM)])
def test_detection_target_equals_pytorch_grad_cam(yolo, method, cls):
    model, path, x, layers = yolo
    ex = onnxcam.Explainer(path, output=OUTPUT, layer=layers["p3"], device="cpu")
    got = ex.explain(x, method=method, target=[Detection(1, index=a) for a in ANCHORS])
    ref = pgc(cls, model, [model.p3], x, [lambda y, a=a: y[4 + 1, a] for a in ANCHORS])
    assert got.valid.all() and np.abs(got.heatmap - ref).max() <= TOL


@pytest.mark.parametrize("method, cls", [("gradcam", GradCAM), ("layercam", LayerCAM)])
def test_several_layers_equal_pytorch_grad_cams_aggregate(yolo, method, cls):
    """Two layers at once. The scores are scaled by 1e4 (a Seed target) so that every layer's map has a range ≥ 1:
    below that pytorch-grad-cam's absolute 1e-7 in its min-max differs from onnxcam's relative one by more than
    1e-3 once the layers are averaged (a single layer is renormalized, so there it does not matter)."""
    model, path, x, layers = yolo
    ex = onnxcam.Explainer(path, output=OUTPUT, layer=[layers["p3"], layers["p4"]], device="cpu")
    seeds = []
    for a in ANCHORS:
        w = np.zeros((7, 320), np.float32)
        w[4 + 1, a] = 1e4
        seeds.append(w)
    got = ex.explain(x, method=method, target=[Seed(w) for w in seeds])
    ref = pgc(cls, model, [model.p3, model.p4], x, [lambda y, w=w: (y * torch.from_numpy(w)).sum() for w in seeds])
    assert np.abs(got.heatmap - ref).max() <= TOL
    assert set(got.extras["cams"]) == {layers["p3"], layers["p4"]}


def test_detection_by_box_picks_the_best_overlapping_anchor(yolo):
    model, path, x, layers = yolo
    ex = onnxcam.Explainer(path, output=OUTPUT, layer=layers["p3"], device="cpu")
    y = ex.outputs_at(x[:1])[0]
    cx, cy, w, h = y[:4, 42]
    by_box = ex.explain(x[:1], method="gradcam", target=Detection(2, box=(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    np.testing.assert_array_equal(by_box.heatmap, ex.explain(x[:1], method="gradcam", target=Detection(2, index=42)).heatmap)


def test_seed_target_equals_pytorch_grad_cam_and_captum(yolo):
    model, path, x, layers = yolo
    w = np.random.default_rng(1).standard_normal((7, 320)).astype(np.float32)
    ex = onnxcam.Explainer(path, output=OUTPUT, layer=layers["p4"], device="cpu")
    got = ex.explain(x, method="gradcam", target=Seed(w))
    ref = pgc(GradCAM, model, [model.p4], x, [lambda y: (y * torch.from_numpy(w)).sum()] * 2)
    assert np.abs(got.heatmap - ref).max() <= TOL
    ig = ex.explain(x, method="ig", target=Seed(w), steps=16)
    captum = IntegratedGradients(lambda t: (model(t) * torch.from_numpy(w)).sum((1, 2))).attribute(
        torch.from_numpy(x), n_steps=16, method="gausslegendre").detach().numpy()
    assert np.abs(ig.attribution - captum).max() / np.abs(captum).max() <= 1e-4
    assert np.abs(ig.completeness_gap).max() <= 0.05 * np.abs(ig.extras["score_delta"]).max()


def test_eigencam_equals_pytorch_grad_cam(yolo):
    model, path, x, layers = yolo
    got = onnxcam.Explainer(path, output=OUTPUT, layer=layers["p3"], device="cpu").explain(x, method="eigencam")
    ref = pgc(EigenCAM, model, [model.p3], x, None)
    assert np.abs(got.heatmap - ref).max() <= TOL


def test_class_targets_on_a_detector_are_a_one_line_error(yolo):
    _, path, x, _ = yolo
    with pytest.raises(onnxcam.ModelError, match="not \\(N, classes\\).*output="):
        onnxcam.Explainer(path, device="cpu")
    with pytest.raises(onnxcam.UsageError, match="Segmentation, Detection or Seed"):
        onnxcam.Explainer(path, output=OUTPUT, device="cpu").explain(x, method="gradcam", target=1)
    with pytest.raises(onnxcam.UsageError, match="score='logit'"):
        onnxcam.Explainer(path, output=OUTPUT, device="cpu").explain(x, method="rsi-gradcam",
                                                                         target=Detection(0, index=1))


class Out(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


@pytest.fixture(scope="module")
def fcn(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    model = Out(torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=4,
                                                             aux_loss=False)).eval()
    path = tmp_path_factory.mktemp("fcn") / "fcn.onnx"
    proto = export(model, 64, path)
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(np.float32)
    return model, path, x, layer_of(proto, "/model/backbone/layer4/layer4.2/", "Relu")


def test_segmentation_target_equals_semantic_segmentation_target(fcn):
    model, path, x, layer = fcn
    mask = np.zeros((64, 64), np.float32)
    mask[10:40, 20:50] = 1
    got = onnxcam.Explainer(path, output=OUTPUT, layer=layer, device="cpu").explain(
        x, method="gradcam", target=Segmentation(2, mask.astype(bool)))
    ref = pgc(GradCAM, model, [model.model.backbone.layer4], x, [SemanticSegmentationTarget(2, mask)] * 2)
    assert got.target.tolist() == [2, 2] and np.abs(got.heatmap - ref).max() <= TOL


class SmallReLU(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def test_ablationcam_equals_pytorch_grad_cam(tmp_path):
    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = SmallReLU().eval()
    proto = export(model, 32, tmp_path / "small.onnx")
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    layer = layer_of(proto, "/features/features.3", "Relu")
    got = onnxcam.Explainer(tmp_path / "small.onnx", layer=layer, device="cpu").explain(x, method="ablationcam",
                                                                                       target=[1, 3])
    ref = pgc(AblationCAM, model, [model.features[3]], x, [ClassifierOutputTarget(1), ClassifierOutputTarget(3)])
    assert np.abs(got.heatmap - ref).max() <= TOL


class TinySeg(torch.nn.Module):
    """Encoder at 1/4 resolution, a 1×1 classifier, bilinear upsampling to the input: (N, classes, H, W)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.Tanh(),
                                            torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.Tanh())
        self.classifier = torch.nn.Conv2d(16, classes, 1)

    def forward(self, x):
        return torch.nn.functional.interpolate(self.classifier(self.features(x)), size=x.shape[2:], mode="bilinear")


def run_export(proto: onnx.ModelProto, **feeds) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


@pytest.mark.parametrize("method, options", [("gradcam", {}), ("rsi-gradcam", {"steps": 3, "score": "logit",
                                                                                   "baseline": 0.0})])
def test_exported_targets_equal_the_explainer(yolo, tmp_path, method, options):
    """Detection (category and anchor as inputs) and Segmentation (category and mask as inputs), in one graph."""
    _, path, x, layers = yolo
    proto = onnxcam.export(str(path), method, layer=layers["p3"], output=OUTPUT, target="detection", **options)
    out = run_export(proto, input=x, target=np.array([1, 2]), anchor=np.array(ANCHORS))
    ref = onnxcam.Explainer(path, output=OUTPUT, layer=layers["p3"], device="cpu").explain(
        x, method=method, target=[Detection(1, index=ANCHORS[0]), Detection(2, index=ANCHORS[1])], **options)
    assert np.abs(out["heatmap"] - ref.heatmap).max() <= 1e-4

    torch.manual_seed(0)
    seg = export(TinySeg().eval(), 32, tmp_path / "seg.onnx")
    xs = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    mask = np.zeros((2, 32, 32), bool)
    mask[0, 4:20, 8:30], mask[1, 10:32, 0:12] = True, True
    proto = onnxcam.export(seg, method, output=OUTPUT, target="segmentation", **options)
    out = run_export(proto, input=xs, target=np.array([2]), mask=mask)
    ref = onnxcam.Explainer(seg, output=OUTPUT, device="cpu").explain(
        xs, method=method, target=[Segmentation(2, mask[0]), Segmentation(2, mask[1])], **options)
    assert np.abs(out["heatmap"] - ref.heatmap).max() <= 1e-4


def test_detection_layouts_weights_and_nms():
    """v8 (4 + C, A), v5 (A, 5 + C) and NMS rows (K, 6): the weight lands on the class score of the chosen detection;
    a box picks the anchor it overlaps most; NMS keeps the best box of overlapping ones, per class."""
    from onnxcam.targets import detections, nms

    far = [[100 + 10 * k, 100, 2, 2] for k in range(7)]  # low-scoring anchors far away: A = 10 > 4 + C
    boxes = np.array([[10, 10, 4, 4], [11, 10, 4, 4], [30, 30, 6, 6], *far], np.float32)  # cx, cy, w, h: 0, 1 overlap
    cls = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], *[[0.01, 0.01]] * 7], np.float32)
    v8 = np.concatenate([boxes, cls], 1).T  # (4 + C, A)
    w = Detection(1, index=2).weights_for(v8)
    assert w[5, 2] == 1 and w.sum() == 1
    assert Detection(0, box=(9.5, 8, 13.5, 12)).anchor(v8) == 1
    v5 = np.concatenate([boxes, np.ones((10, 1), np.float32), cls], 1)  # (A, 5 + C): objectness 1
    w = Detection(0, index=1).weights_for(v5)
    assert w[1, 5] == 1 and w.sum() == 1
    rows = np.array([[8, 8, 12, 12, 0.9, 0], [28, 27, 33, 33, 0.7, 1], [0, 0, 0, 0, 0, 0]], np.float32)  # (K, 6)
    w = Detection(1, index=1).weights_for(rows)
    assert w[1, 4] == 1 and w.sum() == 1
    kept = nms(*detections(v8), score_threshold=0.5)
    assert kept == [0, 2]  # anchor 1 overlaps anchor 0 of the same class with a lower score
    with pytest.raises(onnxcam.UsageError, match="exactly one of index"):
        Detection(0).weights_for(v8)
