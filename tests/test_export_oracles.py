"""Exported explainer models against independent oracles on the torch module itself: pytorch-grad-cam for the CAM
family, Captum for IG, torch.autograd for saliency, and, with the noise fed as the test-only input `noise`,
torch implementations of SmoothGrad and Smooth Grad-CAM++ at σ > 0. A smooth (Tanh) network keeps float32 kinks
out of the comparison. A toy method defined once in this file runs in the engine and in the export alike."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import zoo
from captum.attr import IntegratedGradients
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import onnxcam
from onnxcam import methods
from onnxcam.methods.cam import CamOptions, single
from onnxcam.methods.definition import Gradient

SIZE, TARGETS = 32, [1, 3]
PGC = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM,
       "hirescam": HiResCAM}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Tanh(),
                                            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.Tanh())
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    torch.manual_seed(0)
    model = Net().eval()
    path = zoo.export_module(model, torch.randn(2, 3, SIZE, SIZE), "legacy", tmp_path_factory.mktemp("net") / "net.onnx")
    proto = onnx.load(path)
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    layer = next(n.output[0] for n in proto.graph.node if n.op_type == "Tanh" and "features.3" in n.name)
    return model, proto, x, layer


def run(proto: onnx.ModelProto, **feeds) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def rel(got, ref) -> float:
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(got, np.float64) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("method", PGC)
def test_cam_export_equals_pytorch_grad_cam(net, method):
    model, proto, x, layer = net
    out = run(onnxcam.export(proto, method, layer=layer), input=x, target=np.array(TARGETS))
    with PGC[method](model, [model.features[3]]) as cam:
        ref = cam(torch.from_numpy(x), [ClassifierOutputTarget(t) for t in TARGETS])
    assert np.abs(out["heatmap"] - ref).max() <= 1e-4


def test_ig_export_equals_captum(net):
    model, proto, x, _ = net
    out = run(onnxcam.export(proto, "ig", steps=16, baseline=0.0), input=x, target=np.array(TARGETS))
    ref = IntegratedGradients(model).attribute(torch.from_numpy(x), target=TARGETS, n_steps=16,
                                               method="gausslegendre").detach().numpy()
    assert rel(out["attribution"], ref) <= 1e-4


def test_saliency_export_equals_autograd(net):
    model, proto, x, _ = net
    out = run(onnxcam.export(proto, "saliency"), input=x, target=np.array(TARGETS))
    xt = torch.from_numpy(x).requires_grad_()
    model(xt)[torch.arange(2), TARGETS].sum().backward()
    assert rel(out["attribution"], xt.grad.numpy()) <= 1e-5


def noisy_inputs(x: np.ndarray, sigma: float, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The standard-normal draws (samples, N, ...) fed to the export, and the noisy inputs they make."""
    eps = np.random.default_rng(1).standard_normal((samples, *x.shape)).astype(np.float32)
    flat = x.reshape(len(x), -1)
    spread = (sigma * (flat.max(1) - flat.min(1))).reshape(1, -1, 1, 1, 1).astype(np.float32)
    return eps, x[None] + spread * eps


def layer_grads(model, rows: np.ndarray, targets) -> tuple[np.ndarray, np.ndarray]:
    """A and ∂y_target/∂A at the layer for a stack of inputs."""
    got = {}
    handle = model.features[3].register_forward_hook(lambda m, i, o: got.update(a=o) or o.retain_grad())
    try:
        y = model(torch.from_numpy(rows))
        y[torch.arange(len(rows)), torch.as_tensor(targets)].sum().backward()
    finally:
        handle.remove()
    return got["a"].detach().numpy(), got["a"].grad.numpy()


def test_smoothgrad_export_with_noise_equals_torch(net):
    model, proto, x, _ = net
    eps, rows = noisy_inputs(x, 0.2, 3)
    out = run(onnxcam.export(proto, "smoothgrad", samples=3, sigma=0.2, variant="vargrad", noise_input=True),
              input=x, target=np.array(TARGETS), noise=eps)
    xt = torch.from_numpy(rows.reshape(-1, *x.shape[1:])).requires_grad_()
    model(xt)[torch.arange(6), TARGETS * 3].sum().backward()
    g = xt.grad.numpy().reshape(3, *x.shape).astype(np.float64)
    assert rel(out["attribution"], (g**2).mean(0) - g.mean(0) ** 2) <= 1e-4


def test_smooth_gradcam_pp_export_with_noise_equals_torch(net):
    model, proto, x, layer = net
    eps, rows = noisy_inputs(x, 0.3, 4)
    out = run(onnxcam.export(proto, "smooth-gradcam++", layer=layer, samples=4, sigma=0.3, noise_input=True),
              input=x, target=np.array(TARGETS), noise=eps)
    _, g = layer_grads(model, rows.reshape(-1, *x.shape[1:]), TARGETS * 4)
    a, _ = layer_grads(model, x, TARGETS)
    g = g.reshape(4, *a.shape).astype(np.float64)
    d1, d2, d3 = g.mean(0), (g**2).mean(0), (g**3).mean(0)
    denom = 2 * d2 + a.sum((2, 3), keepdims=True) * d3
    alpha = np.where(denom != 0, d2 / np.where(denom != 0, denom, 1), 0)
    w = (alpha * np.maximum(d1, 0)).sum((2, 3))
    cam = np.maximum(np.einsum("nk,nkhw->nhw", w, a), 0)
    assert rel(out["cam"], cam) <= 1e-4


def gradient_times_activation(ops, s, ctx, o):
    """A toy method: ReLU(Σ_k G^k ⊙ A^k) written once for this test."""
    return {"map": ops.relu(ops.sum(s["g"] * ctx.a, ops.channel))}


def test_a_method_defined_once_runs_in_engine_and_export(net, per_row_engine):
    model, proto, x, layer = net
    toy = Gradient("toy-gxa", CamOptions, "layer", single, lambda ops, row, o: {"g": row.g}, gradient_times_activation)
    methods.register(toy)
    try:
        engine = onnxcam.Explainer(proto, layer=layer, device="cpu").explain(x, method="toy-gxa", target=TARGETS)
        exported = run(onnxcam.export(proto, "toy-gxa", layer=layer), input=x, target=np.array(TARGETS))
    finally:
        del methods.METHODS["toy-gxa"]
    a, g = layer_grads(model, x, TARGETS)
    ref = np.maximum((a * g).sum(1), 0)
    assert rel(engine.cam, ref) <= 1e-5 and rel(exported["cam"], ref) <= 1e-5
    assert np.abs(engine.heatmap - exported["heatmap"]).max() <= 1e-5


@pytest.mark.parametrize("n, size", [(7, 224), (14, 224), (7, 7), (5, 3), (9, 100), (224, 7), (3, 1000), (1, 50)])
def test_a_linear_resize_reaches_its_min_and_max_at_the_extreme_rows(n, size):
    """Exported heatmaps are normalized from the extreme rows only; the oracle is every output row in float64."""
    from onnxcam.methods.arrays import extreme_rows, interpolation

    r = interpolation(n, size).astype(np.float64)
    kept = r[extreme_rows(r)]
    v = np.random.default_rng(n * size).standard_normal((n, 200))
    np.testing.assert_allclose((kept @ v).max(0), (r @ v).max(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose((kept @ v).min(0), (r @ v).min(0), rtol=0, atol=1e-12)
