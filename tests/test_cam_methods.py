"""Every CAM method against an independent oracle, on real exported models.

1. pytorch-grad-cam (GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM) on the torch module the ONNX file
   was exported from: heatmaps within 1e-3 (max abs) on ResNet-50, MobileNetV3-Large, ViT-B/16 (class token
   dropped, 14×14 grid) and the shipped EfficientNet-Lite0, batch 3, explicit targets and top-1.
2. RSI-Grad-CAM and Integrated Grad-CAM against a direct torch.autograd implementation of
   ../shared/reference/methods.md written here (forward hook on the torch layer), raw maps within 1e-4 of
   their max and heatmaps within 1e-3; RSI without the ReLU on G, left rule, against Captum's
   LayerConductance (the full R tensor and the convergence delta); RSI layer completeness.
3. Smooth Grad-CAM++ with onnxcam's reproducible noise against a torch implementation, whole layer and
   subsets of feature maps / neurons.
4. Sanity (Adebayo et al. 2018): randomized classifier weights change the map; a constant map is an error.
5. Bad options: one-line OnnxcamError each.

The torchvision models carry seeded random weights (tests/zoo.py); inputs are the demo photographs.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import zoo
from captum.attr import LayerConductance
from onnx import TensorProto, helper, numpy_helper
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import onnxcam
from onnxcam.methods.smooth import noise

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLES = [ROOT / "models" / "samples" / "cat.jpg", ROOT / "models" / "samples" / "coffee.jpg"]
IMAGENET = (np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32))
INCEPTION = (np.full(3, 0.5, np.float32), np.full(3, 0.5, np.float32))  # the demo model's preprocessing

HEATMAP_TOL = 1e-3  # max |onnxcam − oracle| of the [0, 1] heatmaps
CAM_RTOL = 1e-4  # max |onnxcam − oracle| / max |oracle| of the raw layer-resolution maps
PGC = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM,
       "hirescam": HiResCAM}


def images(mean: np.ndarray, std: np.ndarray, size: int = 224) -> np.ndarray:
    """cat, coffee and the mirrored cat, resized to size × size, normalized, NCHW float32."""
    out = []
    for path in SAMPLES:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        out.append(((cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA) / 255 - mean) / std).transpose(2, 0, 1))
    out.append(out[0][:, :, ::-1])
    return np.ascontiguousarray(out, dtype=np.float32)


@dataclass
class Subject:
    """A torch module, its ONNX export and one layer named in both."""

    name: str
    torch: torch.nn.Module
    path: Path
    module: torch.nn.Module  # the torch layer whose output is ...
    layer: str  # ... this ONNX tensor
    x: np.ndarray
    targets: list[int]  # explicit classes, one per image (maps of random-weight models are non-degenerate)
    reshape: object = None  # pytorch-grad-cam reshape_transform (token sequences → grids)

    def explain(self, method: str, **options) -> onnxcam.Explanation:
        return explainer(self.path).explain(self.x, method=method, layer=self.layer, **options)


@functools.cache
def explainer(path: Path) -> onnxcam.Explainer:
    """One Explainer per model file: it keeps a graph and a session per layer and score (ViT's take ~10 s to build)."""
    return onnxcam.Explainer(path)


@pytest.fixture(scope="module", autouse=True)
def _free_explainers():
    yield
    explainer.cache_clear()


def session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def onnx_values(path: Path, tensors: list[str], x: np.ndarray) -> list[np.ndarray]:
    """Plain ONNX Runtime values of graph tensors (exposed as extra outputs), independent of onnxcam."""
    proto = onnx.load(str(path))
    proto.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors)
    sess = session(proto)
    return sess.run(tensors, {sess.get_inputs()[0].name: x})


def check_export(subject: Subject) -> Subject:
    """The ONNX file computes the torch module's logits and the named tensor is the torch layer's output."""
    captured = []
    handle = subject.module.register_forward_hook(lambda m, i, o: captured.append(o.detach().numpy().copy()))
    try:
        with torch.no_grad():
            logits = subject.torch(torch.from_numpy(subject.x)).numpy()
    finally:
        handle.remove()
    got_logits, got_layer = onnx_values(subject.path, [zoo.OUTPUT, subject.layer], subject.x)
    assert rel(got_logits, logits) < 1e-4, f"{subject.name}: the ONNX file is not this torch module"
    assert rel(got_layer, captured[-1]) < 1e-4, f"{subject.name}: {subject.layer} is not the torch layer's output"
    return subject


def rel(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(got, np.float64) - ref).max() / np.abs(ref).max())


def assert_r_matches(got: onnxcam.Explanation, r32: np.ndarray, r64: np.ndarray) -> None:
    """RSI's R against torch in float64, within CAM_RTOL or what torch's own float32 reaches: on the demo's ReLU6
    head a pre-activation within float32 noise of a kink moves torch float32's R by up to ~3e-4 of max."""
    err, own = rel(got.extras["R"], r64), rel(r32, r64)
    print(f"\nR vs torch float64: max rel err {err:.1e} (torch float32: {own:.1e})")
    assert err <= max(CAM_RTOL, own)


# --- the models: exported once per session (tests/zoo.py), built once per module -------------------------------------

@pytest.fixture(scope="module")
def resnet50(zoo_export) -> Subject:
    model = zoo.build("resnet50")
    path = zoo_export("resnet50", "legacy")
    auto = explainer(path).layer.name  # the output of layer4[-1]: its final ReLU, before GlobalAveragePool
    return check_export(Subject("resnet50", model, path, model.layer4[-1], auto, images(*IMAGENET), [21, 133, 301]))


@pytest.fixture(scope="module")
def mobilenet_v3_large(zoo_export) -> Subject:
    model = zoo.build("mobilenet_v3_large")
    path = zoo_export("mobilenet_v3_large", "legacy")
    auto = explainer(path).layer.name
    return check_export(Subject("mobilenet_v3_large", model, path, model.features[-1], auto, images(*IMAGENET),
                                [7, 133, 301]))


def vit_grid(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's ViT reshape_transform: drop the class token, 196 tokens → 14 × 14, channels first."""
    return t[:, 1:, :].reshape(t.size(0), 14, 14, t.size(2)).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def vit_b_16(zoo_export) -> Subject:
    model = zoo.build("vit_b_16")
    path = zoo_export("vit_b_16", "legacy")
    # encoder.layers[-1].ln_1 is exported as the LayerNormalization node of that module scope
    (layer,) = [n.output[0] for n in onnx.load(str(path)).graph.node
                if n.op_type == "LayerNormalization" and n.name.endswith("encoder_layer_11/ln_1/LayerNormalization")]
    return check_export(Subject("vit_b_16", model, path, model.encoder.layers[-1].ln_1, layer, images(*IMAGENET),
                                [1, 500, 999], reshape=vit_grid))


def demo_torch() -> torch.nn.Module:
    """The demo model's torch module, built by tools/export_demo_model.py itself."""
    spec = importlib.util.spec_from_file_location("export_demo_model", ROOT / "tools" / "export_demo_model.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.differentiable_model()


@pytest.fixture(scope="module")
def demo() -> Subject:
    model = demo_torch()
    auto = explainer(DEMO).layer.name
    return check_export(Subject("demo", model, DEMO, model._swish.head, auto, images(*INCEPTION), [285, 968, 281]))


@pytest.fixture(scope="module")
def demo_explainer(demo) -> onnxcam.Explainer:
    return explainer(DEMO)


# --- 1. pytorch-grad-cam ---------------------------------------------------------------------------------------------

def test_resnet50_auto_layer_is_layer4_output(resnet50):
    """'auto' = the last ReLU of layer4[-1], read by GlobalAveragePool (its values equal the torch module's output)."""
    proto = onnx.load(str(resnet50.path))
    producer = next(n for n in proto.graph.node if resnet50.layer in n.output)
    readers = [n.op_type for n in proto.graph.node if resnet50.layer in n.input]
    assert producer.op_type == "Relu" and producer.name.startswith("/layer4/layer4.2/") and readers == ["GlobalAveragePool"]


def pytorch_grad_cam_maps(s: Subject, target) -> dict[str, np.ndarray]:
    """Every method's pytorch-grad-cam heatmap from one forward/backward pass.

    Each CAM object hooks the layer when it is built, so the pass run by the first object's __call__ fills the
    activations and gradients of all of them; the others then run the rest of BaseCAM.forward as it is
    (compute_cam_per_layer: their weights, ReLU, scale_cam_image with the resize; aggregate_multi_layers)."""
    targets = None if target is None else [ClassifierOutputTarget(t) for t in target]
    cams = {name: cls(s.torch, [s.module], reshape_transform=s.reshape) for name, cls in PGC.items()}
    try:
        x = torch.from_numpy(s.x)
        maps = {"gradcam": cams["gradcam"](x, targets)}
        for name, cam in cams.items():
            if name != "gradcam":
                assert len(cam.activations_and_grads.activations) == len(cam.activations_and_grads.gradients) == 1
                maps[name] = cam.aggregate_multi_layers(cam.compute_cam_per_layer(x, targets, False))
    finally:
        for cam in cams.values():
            cam.activations_and_grads.release()
    return maps


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_large", pytest.param("vit_b_16", marks=pytest.mark.slow),
                                  "demo"])
@pytest.mark.parametrize("targets", ["explicit", "top1"])
def test_matches_pytorch_grad_cam(request, name, targets):
    s: Subject = request.getfixturevalue(name)
    target = s.targets if targets == "explicit" else None
    reference = pytorch_grad_cam_maps(s, target)
    with torch.no_grad():
        top1 = s.torch(torch.from_numpy(s.x)).argmax(-1).tolist()
    errors = {}
    for method, ref in reference.items():
        got = s.explain(method, target=target)
        assert got.target.tolist() == (top1 if target is None else target)
        assert got.heatmap.shape == ref.shape and (np.ptp(ref, axis=(1, 2)) > 0.5).all(), "degenerate reference map"
        errors[method] = float(np.abs(got.heatmap - ref).max())
    print(f"\n{name} {targets} max |heatmap − pytorch-grad-cam|: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert max(errors.values()) <= HEATMAP_TOL, errors


# --- 2. path methods: a torch implementation of methods.md, and Captum ------------------------------------------------

def path_rows(x: np.ndarray, base: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """(N, S, ...) inputs x' + α(x − x') for every image and α, in x's dtype."""
    a = alphas.astype(x.dtype).reshape(1, -1, *([1] * (x.ndim - 1)))
    return base[:, None] + a * (x - base)[:, None]


def torch_layer_grads(model, module, rows: np.ndarray, targets, score: str, chunk: int = 17):
    """A and G = ∂score[target]/∂A at the layer for rows (N, S, ...): float64 arrays (N, S, K, h, w), and scores."""
    captured = []
    # the hook hands a copy downstream: torchvision's Bottleneck adds the identity into bn3's output in place
    handle = module.register_forward_hook(lambda m, i, o: (captured.append(o), o.clone())[1])
    acts, grads, scores = [], [], []
    try:
        for n, t in enumerate(targets):
            a_n, g_n, s_n = [], [], []
            for start in range(0, rows.shape[1], chunk):
                captured.clear()
                out = model(torch.from_numpy(np.ascontiguousarray(rows[n, start:start + chunk])))
                y = (out.softmax(-1) if score == "prob" else out)[:, t]
                (g,) = torch.autograd.grad(y.sum(), captured[-1])
                a_n.append(captured[-1].detach().double())
                g_n.append(g.double())
                s_n.append(y.detach().double())
            acts.append(torch.cat(a_n).numpy())
            grads.append(torch.cat(g_n).numpy())
            scores.append(torch.cat(s_n).numpy())
    finally:
        handle.remove()
    return np.stack(acts), np.stack(grads), np.stack(scores)


def torch_rsi(s: Subject, targets, steps: int, baseline, score="prob", grad_relu=True, rule="trapezoid",
              dtype=np.float32):
    """methods.md RSI-Grad-CAM: α_i = i/m (i = 0..m), R = Σ ½(G_{i−1} + G_i)(A_i − A_{i−1}), w_k = mean_ij R^k,
    L = ReLU(mean_k w_k A^k(x)). Returns L, R, score(x') and score(x); dtype=np.float64 runs a float64 copy."""
    model, module = s.torch, s.module
    if dtype == np.float64:
        name = next(n for n, m in s.torch.named_modules() if m is s.module)
        model = copy.deepcopy(s.torch).double()
        module = model.get_submodule(name)
    x = s.x.astype(dtype)
    base = np.broadcast_to(np.asarray(baseline, dtype), x.shape)
    a, g, y = torch_layer_grads(model, module, path_rows(x, base, np.linspace(0.0, 1.0, steps + 1)), targets, score)
    if grad_relu:
        g = np.maximum(g, 0)
    left = g[:, :-1] if rule == "left" else 0.5 * (g[:, :-1] + g[:, 1:])
    r = (left * np.diff(a, axis=1)).sum(axis=1)
    (a_x,), _, _ = torch_layer_grads(model, module, x[None], [targets[0]], score)  # A(x): any target
    w = r.mean(axis=(2, 3))
    cam = np.maximum(np.einsum("nk,nkhw->nhw", w, a_x) / a_x.shape[1], 0)
    return cam, r, y[:, 0], y[:, -1]


def torch_integrated_gradcam(s: Subject, targets, steps: int, baseline=0.0):
    """methods.md Integrated Grad-CAM: L = Σ_{m<M} ReLU(Σ_k A^k(x_m)·mean_ij ∂y/∂A^k_ij(x_m)), logit score."""
    base = np.broadcast_to(np.asarray(baseline, np.float32), s.x.shape)
    a, g, _ = torch_layer_grads(s.torch, s.module, path_rows(s.x, base, np.arange(steps) / steps), targets, "logit")
    return np.maximum(np.einsum("nsk,nskhw->nshw", g.mean(axis=(3, 4)), a), 0).sum(axis=1)


def heatmap_of(cam: np.ndarray, size: int = 224) -> np.ndarray:
    """pytorch-grad-cam's post-processing of one layer: scale_cam_image with a resize, then again."""
    return scale_cam_image(scale_cam_image(cam, (size, size)))


def assert_cam_matches(got: onnxcam.Explanation, cam: np.ndarray, label: str) -> tuple[float, float]:
    cam_err = max(rel(got.cam[i], cam[i]) for i in range(len(cam)))
    map_err = float(np.abs(got.heatmap - heatmap_of(cam)).max())
    print(f"\n{label}: raw cam max rel err {cam_err:.1e}, heatmap max abs err {map_err:.1e}")
    assert (np.ptp(cam, axis=(1, 2)) > 0).all(), "degenerate reference map"
    assert cam_err <= CAM_RTOL and map_err <= HEATMAP_TOL, (cam_err, map_err)
    return cam_err, map_err


def reduced(s: Subject, n: int = 2) -> Subject:
    """The first n images (cat, coffee) only: path methods cost (steps + 1) passes per image."""
    return Subject(s.name, s.torch, s.path, s.module, s.layer, s.x[:n], s.targets[:n], s.reshape)


def demo_head_conv(demo: Subject) -> Subject:
    """The demo model's head convolution before its ReLU6 (BatchNorm folded into the ONNX Conv): signed activations,
    like the paper's ResNet-50 layer4[-1].conv3."""
    s = reduced(demo)
    return Subject(s.name, s.torch, s.path, s.torch._bn1, "/_conv_head/Conv_output_0", s.x, s.targets)


def efficientnet_block5(zoo_export) -> Subject:
    """torchvision EfficientNet-B0's features[5] (14 × 14, a residual block) with zoo's seeded weights: a layer in the
    middle of a smooth network (SiLU, Sigmoid), so gradients are comparable element by element. (On ReLU/HardSwish
    networks a pre-activation within float32 noise of a kink moves single gradient elements by percents, e.g. up to
    1.5e-2 of max at MobileNetV3's features[12], which the path sum carries into the map at ~6e-4.)"""
    model = zoo.build("efficientnet_b0")
    return Subject("efficientnet_b0", model, zoo_export("efficientnet_b0", "legacy"), model.features[5],
                   "/features/features.5/features.5.2/Add_output_0", images(*IMAGENET)[:2], [])


# With seeded random weights ResNet-50 gives one class ~all the probability at every baseline tried, and the score
# falls along the path: RSI maps are ≤ 0 everywhere for every target (onnxcam raises). The demo's real weights and
# EfficientNet-B0 with zoo's weights give proper maps.
@pytest.mark.parametrize("where", ["demo-conv_head", "efficientnet_b0-features5"])
def test_rsi_gradcam_matches_torch_other_layers(request, where):
    if where == "demo-conv_head":
        s, black = demo_head_conv(request.getfixturevalue("demo")), -1.0
    else:
        s, black = efficientnet_block5(request.getfixturevalue("zoo_export")), (-IMAGENET[0] / IMAGENET[1])[:, None, None]
    check_export(s)
    # methods.md's baseline: a black image through the model's preprocessing (given explicitly: these are not
    # the demo's normalization, which onnxcam's default "black" reads from the model's metadata)
    got = s.explain("rsi-gradcam", target=None, steps=8, baseline=black)
    cam, r, _, _ = torch_rsi(s, got.target, 8, black)
    assert_cam_matches(got, cam, f"rsi-gradcam {where} steps 8")
    assert_r_matches(got, r, torch_rsi(s, got.target, 8, black, dtype=np.float64)[1])


@pytest.mark.parametrize("options", [dict(), dict(grad_relu=False, score="logit"), dict(rule="left", baseline=-1.0)],
                         ids=["defaults", "no-relu-logit", "left-black"])
def test_rsi_gradcam_matches_torch_demo(demo, options):
    """8 steps on two images (their rows share chunks of the step batch); all defaults, 50 steps, on the cat."""
    s = reduced(demo, 2 if options else 1)
    steps = 8 if options else 50
    got = s.explain("rsi-gradcam", target=None, **({"steps": 8} if options else {}), **options)
    ref_options = dict(score="prob", grad_relu=True, rule="trapezoid", baseline=-1.0) | options  # demo black = -1
    cam, r, y0, y1 = torch_rsi(s, got.target, steps, **ref_options)
    assert_cam_matches(got, cam, f"rsi-gradcam demo {options or 'defaults, 50 steps'}")
    assert_r_matches(got, r, torch_rsi(s, got.target, steps, **ref_options, dtype=np.float64)[1])
    np.testing.assert_allclose(got.extras["score_delta"], y1 - y0, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("steps", [8, None], ids=["8-steps", "default-50-steps"])
def test_integrated_gradcam_matches_torch_demo(demo, steps):
    s = reduced(demo, 2 if steps else 1)
    targets = [285, 967][: len(s.x)]
    got = s.explain("integrated-gradcam", target=targets, **({"steps": steps} if steps else {}))
    assert_cam_matches(got, torch_integrated_gradcam(s, targets, steps or 50), f"integrated-gradcam demo, {steps or 50} steps")


def test_integrated_gradcam_matches_torch_mobilenet(mobilenet_v3_large):
    s = mobilenet_v3_large
    got = s.explain("integrated-gradcam", target=s.targets, steps=8, baseline=0.5)
    assert_cam_matches(got, torch_integrated_gradcam(s, s.targets, 8, 0.5), "integrated-gradcam mobilenet, 8 steps")


def test_rsi_without_grad_relu_left_rule_is_captum_layer_conductance(demo):
    """Captum's LayerConductance evaluates the layer at alphas_func(n_steps + 1) and sums G_i (A_{i+1} − A_i) over
    consecutive points; "riemann_trapezoid" is the method whose alphas are linspace(0, 1, n_steps + 1) = i/m with
    both ends (the step sizes are not used by LayerConductance), which makes it the left-rule sum onnxcam computes."""
    s, steps = reduced(demo), 8
    got = s.explain("rsi-gradcam", target=None, steps=steps, grad_relu=False, rule="left")
    conductance = LayerConductance(lambda z: s.torch(z).softmax(-1), s.module)
    r, delta = conductance.attribute(torch.from_numpy(s.x), baselines=-1.0, target=got.target.tolist(), n_steps=steps,
                                     method="riemann_trapezoid", return_convergence_delta=True)
    r, delta = r.detach().double().numpy(), delta.detach().double().numpy()
    err = rel(got.extras["R"], r)
    print(f"\nR vs Captum LayerConductance: max rel err {err:.1e}; completeness gap {got.completeness_gap} vs {delta}")
    assert err <= CAM_RTOL
    np.testing.assert_allclose(got.completeness_gap, delta, rtol=1e-3, atol=1e-4 * np.abs(got.extras["score_delta"]).max())
    cam, _, _, _ = torch_rsi(s, got.target, steps, -1.0, grad_relu=False, rule="left")  # the demo's black image
    assert_cam_matches(got, cam, "rsi-gradcam no ReLU on G, left rule")


def test_rsi_completeness_gap_shrinks_with_steps(demo):
    """Without the ReLU on G, Σ R ≈ y(x) − y(x'): the gap is small against the score change and falls with m."""
    gaps = {}
    for steps in (4, 32):
        res = reduced(demo).explain("rsi-gradcam", target=None, steps=steps, grad_relu=False, baseline=0.0)
        gaps[steps] = np.abs(res.completeness_gap) / np.abs(res.extras["score_delta"])
    print(f"\nrelative completeness gap: {gaps}")
    assert (gaps[32] < 0.05).all() and (gaps[32] < gaps[4]).all(), gaps


# --- 3. Smooth Grad-CAM++ --------------------------------------------------------------------------------------------

def torch_smooth_gradcam_pp(s: Subject, targets, samples: int, sigma: float, seed: int, channels=None, neurons=None):
    """methods.md Smooth Grad-CAM++: D_p = ⟨G^p⟩ over x + σ·range(x)·noise, α = D2 / (2 D2 + Σ_ab A · D3) (0 where the
    denominator is 0), w_k = Σ_ij α ReLU(D1) over the chosen neurons, the k-sum over the chosen feature maps."""
    n = len(s.x)
    spread = sigma * (s.x.reshape(n, -1).max(1) - s.x.reshape(n, -1).min(1))
    rows = np.stack([[s.x[i] + spread[i] * noise(seed, i, k, s.x.shape[1:]) for k in range(samples)] for i in range(n)])
    _, g, _ = torch_layer_grads(s.torch, s.module, rows, targets, "logit")
    (a,), _, _ = torch_layer_grads(s.torch, s.module, s.x[None], [targets[0]], "logit")
    d1, d2, d3 = (np.mean(g**p, axis=1) for p in (1, 2, 3))
    if neurons is not None:
        d1, d2, d3 = (d * neurons for d in (d1, d2, d3))
    denom = 2 * d2 + a.sum(axis=(2, 3), keepdims=True) * d3
    alpha = np.divide(d2, denom, out=np.zeros_like(d2), where=denom != 0)
    w = (alpha * np.maximum(d1, 0)).sum(axis=(2, 3))
    if channels is not None:
        w = w * np.isin(np.arange(w.shape[1]), channels)
    return np.maximum(np.einsum("nk,nkhw->nhw", w, a), 0)


NEURONS = np.zeros((7, 7), bool)
NEURONS[1:5, 2:6] = True
SUBSETS = {"all": (None, None), "channels": (list(range(0, 320, 3)), None), "neurons": (None, NEURONS),
           "both": (list(range(160)), NEURONS)}


@pytest.fixture(scope="module")
def demo_block15(demo) -> Subject:
    """The demo model at its last block's output (BatchNorm folded into the ONNX Conv). At the auto layer the
    gradient is the classifier row masked by ReLU6, which input noise hardly changes: there Smooth Grad-CAM++
    would not test the smoothing."""
    s = reduced(demo)
    return check_export(Subject(s.name, s.torch, s.path, s.torch._blocks[15]._bn2,
                                "/_blocks.15/_project_conv/Conv_output_0", s.x, s.targets))


@pytest.mark.parametrize("subset", list(SUBSETS))
def test_smooth_gradcam_pp_matches_torch(demo_block15, subset):
    s, (channels, neurons) = demo_block15, SUBSETS[subset]
    options = dict(samples=4, sigma=0.2, seed=7, channels=channels, neurons=neurons)
    got = s.explain("smooth-gradcam++", target=[285, 968], **options)
    cam = torch_smooth_gradcam_pp(s, [285, 968], 4, 0.2, 7, channels, neurons)
    assert_cam_matches(got, cam, f"smooth-gradcam++ {subset}")
    if subset != "all":  # a subset is a different map, not the whole-layer one
        whole = s.explain("smooth-gradcam++", target=[285, 968], samples=4, sigma=0.2, seed=7)
        assert np.abs(whole.cam - got.cam).max() > 1e-3 * np.abs(whole.cam).max()


def test_smooth_gradcam_pp_noise_is_reproducible_and_chunking_free(demo_block15):
    a = demo_block15.explain("smooth-gradcam++", samples=3, seed=1, batch_size=2)
    b = demo_block15.explain("smooth-gradcam++", samples=3, seed=1, batch_size=5)
    c = demo_block15.explain("smooth-gradcam++", samples=3, seed=2)
    np.testing.assert_allclose(a.cam, b.cam, rtol=1e-5, atol=1e-7 * np.abs(a.cam).max())
    assert np.abs(a.cam - c.cam).max() > 1e-3 * np.abs(a.cam).max()


# --- 4. sanity checks ------------------------------------------------------------------------------------------------

def classifier(proto: onnx.ModelProto) -> tuple[onnx.TensorProto, onnx.TensorProto]:
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    inits = {t.name: t for t in proto.graph.initializer}
    return inits[gemm.input[1]], inits[gemm.input[2]]


def replace(tensor: onnx.TensorProto, array: np.ndarray) -> None:
    tensor.CopyFrom(numpy_helper.from_array(array.astype(np.float32), tensor.name))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_map_depends_on_classifier_weights(demo, demo_explainer):
    """Adebayo et al.'s model-parameter randomization: the same class explained with random classifier weights
    must give a different map."""
    x = demo.x[:2]
    real = demo_explainer.explain(x, method="gradcam", target=[285, 967])
    proto = onnx.load(str(DEMO))
    weight, bias = classifier(proto)
    w = numpy_helper.to_array(weight)
    rng = np.random.default_rng(0)
    replace(weight, rng.normal(0, w.std(), w.shape))
    replace(bias, rng.normal(0, numpy_helper.to_array(bias).std(), bias.dims))
    randomized = onnxcam.Explainer(proto).explain(x, method="gradcam", target=[285, 967])
    corr = [correlation(real.heatmap[i], randomized.heatmap[i]) for i in range(len(x))]
    print(f"\ncorrelation of Grad-CAM maps, real vs randomized classifier: {corr}")
    assert max(corr) < 0.9, corr


def test_class_that_ignores_the_layer_gives_an_error(demo, demo_explainer):
    """Zero the classifier row of one class: its logit no longer depends on the layer, G = 0, the map is constant."""
    proto = onnx.load(str(DEMO))
    weight, _ = classifier(proto)
    w = numpy_helper.to_array(weight).copy()
    w[285] = 0
    replace(weight, w)
    ex = onnxcam.Explainer(proto)
    for method in ("gradcam", "gradcam++", "layercam", "hirescam", "xgradcam"):
        with pytest.raises(onnxcam.OnnxcamError, match="constant") as info:
            ex.explain(demo.x[:2], method=method, target=285)
        assert "\n" not in str(info.value)
    assert ex.explain(demo.x[:2], method="gradcam", target=281).heatmap.max() == pytest.approx(1, abs=1e-6)


def test_dead_layer_gives_an_error():
    """A layer whose ReLU output is all zero (A = 0) cannot produce a map: an error, never a flat heatmap."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.full(4, -1e3, np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "dead", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ex = onnxcam.Explainer(model)
    assert ex.layer.name == "r"
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    for method in ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "rsi-gradcam", "integrated-gradcam",
                   "smooth-gradcam++"):
        options = {"steps": 2} if method in ("rsi-gradcam", "integrated-gradcam") else {}
        with pytest.raises(onnxcam.OnnxcamError, match="constant"):
            ex.explain(x, method=method, target=[0, 3], **options)


# --- 5. bad options --------------------------------------------------------------------------------------------------

BAD = [
    (dict(method="gradcm"), "did you mean gradcam"),
    (dict(method="rsi-gradcam", step=4), "no option 'step'"),
    (dict(method="gradcam", steps=8), "no option 'steps'"),
    (dict(method="rsi-gradcam", steps=0), "steps must be"),
    (dict(method="rsi-gradcam", steps=-1), "steps must be"),
    (dict(method="integrated-gradcam", steps=0), "steps must be"),
    (dict(method="smooth-gradcam++", samples=0), "samples must be"),
    (dict(method="gradcam", batch_size=0), "batch_size must be"),
    (dict(method="rsi-gradcam", steps=2, batch_size=0), "batch_size must be"),
    (dict(method="gradcam", target=1000), "out of range"),
    (dict(method="gradcam", target=-2), "out of range"),
    (dict(method="gradcam", target=[1, 2, 3]), "one per image"),
]


@pytest.mark.parametrize("kwargs, words", BAD, ids=[f"{k}" for k, _ in BAD])
def test_bad_option_is_a_one_line_error(demo_explainer, demo, kwargs, words):
    with pytest.raises(onnxcam.OnnxcamError) as info:
        demo_explainer.explain(demo.x[:2], **kwargs)
    message = str(info.value)
    assert "\n" not in message and words in message, message


@pytest.mark.parametrize("bad", ["shape", "channels-last", "nan", "inf", "int"])
def test_bad_input_is_a_one_line_error(demo_explainer, demo, bad):
    x = demo.x[:2].copy()
    x = {"shape": np.zeros((2, 3, 200, 200), np.float32), "channels-last": x.transpose(0, 2, 3, 1),
         "int": x.astype(np.int64)}.get(bad, x)
    if bad in ("nan", "inf"):
        x[1, 0, 5, 5] = np.nan if bad == "nan" else np.inf
    with pytest.raises(onnxcam.OnnxcamError) as info:
        demo_explainer.explain(x, method="gradcam")
    message = str(info.value)
    assert "\n" not in message and {"shape": "shape", "channels-last": "shape", "nan": "NaN", "inf": "infinite",
                                    "int": "float32"}[bad] in message, message
