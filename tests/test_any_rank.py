"""Signals (N, C, L) and volumes (N, C, D, H, W): the Grad-CAM family against a direct torch implementation (autograd
for A and ∂y/∂A, F.interpolate for the resize), saliency against autograd and IG against Captum, and the exported
graphs against the engine. Smooth (Tanh) nets keep float32 kinks out of the comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
import zoo
from captum.attr import IntegratedGradients
from click.testing import CliRunner

import onnxcam
from onnxcam.cli import main
from onnxcam.methods.smooth import noise
from onnxcam.opencv import cv2

PHOTO = Path(__file__).resolve().parents[1] / "models" / "samples" / "astronaut.jpg"
TARGETS = [1, 2]
SHAPES = {1: (2, 2, 48), 3: (2, 2, 6, 10, 8)}
CAMS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam")


def net(rank: int) -> torch.nn.Module:
    conv, pool = {1: (torch.nn.Conv1d, torch.nn.AdaptiveAvgPool1d), 3: (torch.nn.Conv3d, torch.nn.AdaptiveAvgPool3d)}[rank]
    return torch.nn.Sequential(conv(2, 6, 3, padding=1), torch.nn.Tanh(), conv(6, 8, 3, stride=2, padding=1),
                               torch.nn.Tanh(), pool(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))


@pytest.fixture(scope="module", params=[1, 3], ids=["1d", "3d"])
def case(request, tmp_path_factory):
    rank = request.param
    torch.manual_seed(rank)
    model = net(rank).eval()
    path = zoo.export_module(model, torch.randn(*SHAPES[rank]), "legacy", tmp_path_factory.mktemp("rank") / "net.onnx")
    x = np.random.default_rng(rank).standard_normal(SHAPES[rank]).astype(np.float32)
    return rank, model, str(path), x


def torch_cam(model, x: np.ndarray, method: str) -> np.ndarray:
    """The method's map at model[3], normalized, resized (bi/trilinear, half-pixel) and normalized as pytorch-grad-cam."""
    got = {}
    handle = model[3].register_forward_hook(lambda m, i, o: got.update(a=o) or o.retain_grad())
    try:
        model(torch.from_numpy(x))[torch.arange(len(x)), TARGETS].sum().backward()
    finally:
        handle.remove()
    a, g = got["a"].detach().double(), got["a"].grad.double()
    space = tuple(range(2, a.ndim))
    if method == "gradcam":
        cam = (g.mean(space, keepdim=True) * a).sum(1)
    elif method == "gradcam++":
        alpha = g**2 / (2 * g**2 + a.sum(space, keepdim=True) * g**3 + 1e-6)
        alpha = torch.where(g != 0, alpha, 0)
        cam = ((F.relu(g) * alpha).sum(space, keepdim=True) * a).sum(1)
    elif method == "xgradcam":
        cam = ((g * a / (a.sum(space, keepdim=True) + 1e-7)).sum(space, keepdim=True) * a).sum(1)
    elif method == "layercam":
        cam = (F.relu(g) * a).sum(1)
    else:
        cam = (g * a).sum(1)
    cam = F.relu(cam)

    def norm(m):
        flat = m.flatten(1)
        low = flat.min(1).values.view(-1, *[1] * (m.ndim - 1))
        span = (flat - flat.min(1, keepdim=True).values).max(1).values.view(-1, *[1] * (m.ndim - 1))
        return (m - low) / (span + 1e-7)

    mode = "linear" if a.ndim == 3 else "trilinear"
    up = F.interpolate(norm(cam)[:, None], size=x.shape[2:], mode=mode, align_corners=False)[:, 0]
    return norm(up).numpy()


def run(proto, x) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"input": x, "target": np.array(TARGETS)}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def test_layers_of_signals_and_volumes(case):
    rank, _, path, _ = case
    ex = onnxcam.Explainer(path)
    assert ex.model.layout == {1: "NCL", 3: "NCDHW"}[rank]
    assert len(ex.layers) == 4 and ex.layer.name == ex.layers[-1]
    assert ex.layer.grid == tuple(-(-d // 2) for d in SHAPES[rank][2:])


@pytest.mark.parametrize("method", CAMS)
def test_cam_family_equals_torch(case, method):
    rank, model, path, x = case
    res = onnxcam.Explainer(path).explain(x, method=method, target=TARGETS)
    assert res.heatmap.shape == x[:, 0].shape
    assert np.abs(res.heatmap - torch_cam(model, x, method)).max() <= 1e-5


def test_saliency_and_ig_equal_autograd_and_captum(case):
    _, model, path, x = case
    ex = onnxcam.Explainer(path)
    xt = torch.from_numpy(x).requires_grad_()
    model(xt)[torch.arange(2), TARGETS].sum().backward()
    saliency = ex.explain(x, method="saliency", target=TARGETS).attribution
    assert np.abs(saliency - xt.grad.numpy()).max() <= 1e-5 * np.abs(xt.grad.numpy()).max()
    ig = ex.explain(x, method="ig", target=TARGETS, steps=16, baseline=0.0).attribution
    ref = IntegratedGradients(model).attribute(torch.from_numpy(x), target=TARGETS, n_steps=16).detach().numpy()
    assert np.abs(ig - ref).max() <= 1e-4 * np.abs(ref).max()


def test_smoothgrad_equals_torch_on_the_same_draws(case):
    _, model, path, x = case
    res = onnxcam.Explainer(path).explain(x, method="smoothgrad", target=TARGETS, samples=3, sigma=0.2, seed=5)
    spread = 0.2 * np.ptp(x.reshape(len(x), -1), axis=1)
    rows = np.stack([x[i] + spread[i] * noise(5, i, k, x.shape[1:]) for i in range(2) for k in range(3)])
    xt = torch.from_numpy(rows).requires_grad_()
    model(xt)[torch.arange(6), np.repeat(TARGETS, 3)].sum().backward()
    ref = xt.grad.numpy().reshape(2, 3, *x.shape[1:]).mean(1)
    assert np.abs(res.attribution - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("method", ["gradcam", "rsi-gradcam", "ig"])
def test_export_equals_engine(case, method, per_row_engine):
    _, _, path, x = case
    options = {"steps": 4} if method != "gradcam" else {}
    ref = onnxcam.Explainer(path).explain(x, method=method, target=TARGETS, **options)
    out = run(onnxcam.export(path, method, **options), x)
    assert np.abs(out["heatmap"] - ref.heatmap).max() <= 1e-5


def test_explain_command_reads_npy_samples(case, tmp_path):
    rank, _, path, x = case
    np.save(tmp_path / "stack.npy", x)
    np.save(tmp_path / "one.npy", x[0])
    out = tmp_path / "out"
    args = ["explain", path, str(tmp_path / "stack.npy"), str(tmp_path / "one.npy"), "-m", "gradcam", "-m", "saliency",
            "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for stem, k in (("stack_0", 0), ("stack_1", 1), ("one", 0)):
        ref = onnxcam.Explainer(path).explain(x[k : k + 1], method="gradcam")
        np.testing.assert_allclose(np.load(out / f"{stem}_gradcam.npy"), ref.cam, atol=1e-6)
        assert cv2.imread(str(out / f"{stem}_montage.png")) is not None
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "(3 already there)" in again.output


@pytest.mark.parametrize("bad, message", [
    (lambda x: x[:, :, ::2], "has shape"),
    (lambda x: x.astype(bool), "holds bool data"),
])
def test_explain_command_refuses_bad_npy_in_one_line(case, tmp_path, bad, message):
    _, _, path, x = case
    np.save(tmp_path / "bad.npy", bad(x))
    result = CliRunner().invoke(main, ["explain", path, str(tmp_path / "bad.npy"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_signal_models_refuse_photos_and_image_tasks(case, tmp_path):
    _, _, path, _ = case
    photo = CliRunner().invoke(main, ["explain", path, str(PHOTO), "--out", str(tmp_path)])
    assert photo.exit_code == 1 and "not photos" in photo.output
    task = CliRunner().invoke(main, ["explain", path, "x.npy", "--task", "detect", "--out", str(tmp_path)])
    assert task.exit_code == 2 and "needs an image model" in task.output


def test_a_dynamic_length_is_fixed_by_one_size(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "dynamic.onnx"
    torch.onnx.export(net(1).eval(), torch.randn(2, 2, 48), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N", 2: "L"}, "logits": {0: "N"}}, opset_version=17, dynamo=False)
    with pytest.raises(onnxcam.OnnxcamError, match="spatial size is dynamic"):
        onnxcam.Explainer(str(path)).explain(np.zeros((1, 2, 40), np.float32), method="gradcam")
    ex = onnxcam.Explainer(str(path), input_size=(40, 40))  # what --size 40 passes
    assert ex.model.image_size == (40,) and ex.layer.grid == (20,)
    x = np.random.default_rng(0).standard_normal((1, 2, 40)).astype(np.float32)
    assert ex.explain(x, method="gradcam").heatmap.shape == (1, 40)
