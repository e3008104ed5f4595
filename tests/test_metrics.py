"""onnxcam.metrics against closed forms (tiny ONNX models built by hand), pytorch-grad-cam's ROAD and confidence
metrics, Captum's sensitivity_max and IntegratedGradients, RISE's own deletion/insertion loop, and scipy."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import onnxcam
from onnxcam import metrics
from onnxcam.errors import OnnxcamError

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16


def build(nodes, inits, out_dim: int, size: int = SIZE) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_dim])
    model = helper.make_model(helper.make_graph(nodes, "m", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def mean_model(size: int = SIZE) -> onnx.ModelProto:
    """softmax(y)[0] = 0.05 + 0.9 mean(x) exactly: y = (log m, log(1 − m)); x in [0, 1]."""
    one = numpy_helper.from_array(np.ones(1, np.float32), "one")
    scale = numpy_helper.from_array(np.full(1, 0.9, np.float32), "scale")
    shift = numpy_helper.from_array(np.full(1, 0.05, np.float32), "shift")
    nodes = [helper.make_node("Mul", ["x", "scale"], ["a"]), helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("ReduceMean", ["f"], ["r"], axes=[1], keepdims=1),
             helper.make_node("Add", ["r", "shift"], ["m"]),
             helper.make_node("Sub", ["one", "m"], ["q"]), helper.make_node("Log", ["m"], ["lm"]),
             helper.make_node("Log", ["q"], ["lq"]), helper.make_node("Concat", ["lm", "lq"], ["y"], axis=1)]
    return build(nodes, [one, scale, shift], 2, size)


def linear_model(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """y = flatten(2x) W + b: first-order predictions are exact."""
    inits = [numpy_helper.from_array(np.full(1, 2, np.float32), "two"), numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(b, "b")]
    nodes = [helper.make_node("Mul", ["x", "two"], ["a"]), helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"])]
    return build(nodes, inits, w.shape[1])


class Net(torch.nn.Module):
    """A small smooth CNN (the torch twin of the ONNX model the oracles compare against)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        a = torch.tanh(self.c2(torch.tanh(self.c1(x))))
        return self.fc(a.mean((2, 3)))


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    import zoo

    net = Net().eval()
    path = zoo.export_module(net, torch.zeros(2, 3, SIZE, SIZE), "legacy", tmp_path_factory.mktemp("m") / "net.onnx")
    return net, onnxcam.Explainer(str(path))


def images(n=2, seed=0, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, (n, 3, SIZE, SIZE)).astype(np.float32)


def distinct_maps(n=2, seed=1):
    return np.random.default_rng(seed).permutation(n * SIZE * SIZE).reshape(n, SIZE, SIZE).astype(np.float32) / (
        n * SIZE * SIZE)


# ---------------------------------------------------------------------------------------------- deletion / insertion


def test_deletion_on_mean_model_is_the_closed_form():
    ex = onnxcam.Explainer(mean_model())
    x = np.random.default_rng(0).uniform(0.1, 0.9, (2, 3, SIZE, SIZE)).astype(np.float32)
    s = distinct_maps()
    curve = metrics.deletion(ex, x, s, [0, 0], step=5)
    hw = SIZE * SIZE
    k = -(-hw // 5)
    assert curve.scores.shape == (2, k + 1) and curve.fractions[-1] == 1
    for i in range(2):
        order = np.argsort(-s[i].ravel())  # distinct values: one order
        pixel = x[i].reshape(3, -1)[:, order].sum(0)  # channel sum per pixel, most salient first
        removed = np.concatenate([[0], np.cumsum(pixel)])[np.minimum(np.arange(k + 1) * 5, hw)]
        expected = 0.05 + 0.9 * (x[i].sum() - removed) / x[i].size
        np.testing.assert_allclose(curve.scores[i], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(curve.auc[i], np.trapezoid(expected, dx=1 / k), rtol=1e-5)
    from scipy.ndimage import correlate

    blurred = np.stack([[correlate(c.astype(np.float64), rise_kernel(), mode="constant") for c in im] for im in x])
    ins = metrics.insertion(ex, x, s, [0, 0], step=5)
    np.testing.assert_allclose(ins.scores[:, 0], 0.05 + 0.9 * blurred.mean((1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(ins.scores[:, -1], 0.05 + 0.9 * x.mean((1, 2, 3)), rtol=1e-5)
    flat = metrics.deletion(ex, np.full((1, 3, SIZE, SIZE), 0.8, np.float32), s[:1], [0])  # default step = W
    np.testing.assert_allclose(flat.auc, [0.41], rtol=1e-5)  # ∫₀¹ 0.05 + 0.72 (1 − f) df, exact for the trapezoid


def rise_kernel():
    """RISE's gkern(11, 5) as written in its repository (scipy gaussian_filter of a delta)."""
    from scipy.ndimage import gaussian_filter

    inp = np.zeros((11, 11))
    inp[5, 5] = 1
    return gaussian_filter(inp, 5)


def test_blur_is_rise_gkern_conv2d():
    np.testing.assert_allclose(metrics.gaussian_kernel(11, 5), rise_kernel(), rtol=1e-10, atol=1e-14)
    x = images(2)
    kern = torch.zeros(3, 3, 11, 11, dtype=torch.float64)
    for c in range(3):
        kern[c, c] = torch.from_numpy(rise_kernel())
    expected = torch.nn.functional.conv2d(torch.from_numpy(x).double(), kern, padding=5).numpy()
    np.testing.assert_allclose(metrics.blur(x), expected, atol=1e-5)


def rise_causal_metric(net, img, explanation, mode, step):
    """RISE's CausalMetric.single_run (evaluation.py), with the model's softmax and the explained class given."""
    kern = torch.zeros(3, 3, 11, 11)
    for c in range(3):
        kern[c, c] = torch.from_numpy(rise_kernel()).float()
    hw = img.shape[-1] * img.shape[-2]
    n_steps = (hw + step - 1) // step
    if mode == "del":
        start, finish = img.clone(), torch.zeros_like(img)
    else:
        start, finish = torch.nn.functional.conv2d(img, kern, padding=5), img.clone()
    scores = np.empty(n_steps + 1)
    order = np.flip(np.argsort(explanation.reshape(-1, hw), axis=1), axis=-1)
    with torch.no_grad():
        c = int(torch.softmax(net(img), 1).argmax())
        for i in range(n_steps + 1):
            scores[i] = torch.softmax(net(start), 1)[0, c]
            if i < n_steps:
                coords = order[:, step * i : step * (i + 1)]
                start.numpy().reshape(1, 3, hw)[0, :, coords] = finish.numpy().reshape(1, 3, hw)[0, :, coords]
    return scores, (scores.sum() - scores[0] / 2 - scores[-1] / 2) / n_steps


@pytest.mark.parametrize("mode", ["del", "ins"])
def test_deletion_insertion_match_rise_code(cnn, mode):
    net, ex = cnn
    x, s = images(2), distinct_maps()
    f = metrics.deletion if mode == "del" else metrics.insertion
    curve = f(ex, x, s, None, step=7, batch_size=8)
    for i in range(2):
        scores, auc = rise_causal_metric(net, torch.from_numpy(x[i : i + 1].copy()), s[i], mode, 7)
        np.testing.assert_allclose(curve.scores[i], scores, atol=1e-5)
        np.testing.assert_allclose(curve.auc[i], auc, atol=1e-5)


# ---------------------------------------------------------------------------------------------- pytorch-grad-cam


def test_confidence_change_matches_pytorch_grad_cam(cnn):
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    net, ex = cnn
    x = images(4, seed=3)
    maps = np.random.default_rng(4).random((4, SIZE, SIZE)).astype(np.float32)
    maps[2] = 1  # E = x: no change, neither a drop nor an increase
    t = [0, 1, 2, 3]
    drop, inc = metrics.confidence_change(ex, x, maps, t)
    targets = [ClassifierOutputSoftmaxTarget(c) for c in t]
    xt = torch.from_numpy(x)
    ref_drop = DropInConfidence()(xt, maps, targets, net)
    ref_inc = IncreaseInConfidence()(xt, maps, targets, net)
    with torch.no_grad():
        y = torch.softmax(net(xt), 1)[range(4), t].numpy()
    np.testing.assert_allclose(drop * y / 100, ref_drop, atol=1e-6)
    np.testing.assert_array_equal(inc, ref_inc)
    assert drop[2] == 0 and inc[2] == 0


def test_imputation_matches_pytorch_grad_cam():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    rng = np.random.default_rng(5)
    img = rng.standard_normal((3, 12, 10)).astype(np.float32)
    keep = rng.random((12, 10)) < 0.4
    keep[0, 0] = keep[-1, -1] = False  # corners: the border weights
    ours = metrics.impute(img, keep)
    ref = NoisyLinearImputer(noise=0.0)(torch.from_numpy(img), torch.from_numpy(keep.astype(np.float32))).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_array_equal(ours[:, keep], img[:, keep])
    noisy = metrics.impute(img, keep, noise=0.01, rng=np.random.default_rng(0))
    assert 0.005 < np.std(noisy[:, ~keep] - ours[:, ~keep]) < 0.02


def test_road_matches_pytorch_grad_cam(cnn):
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    net, ex = cnn
    x = images(2, seed=6)
    maps = (np.floor(np.random.default_rng(7).random((2, SIZE, SIZE)) * 8) / 8).astype(np.float32)  # ties
    t = [1, 4]
    pct = (10, 50, 90)
    ours = metrics.road(ex, x, maps, t, percentiles=pct, noise=0.0)
    targets = [ClassifierOutputSoftmaxTarget(c) for c in t]
    ref = {}
    for key, remover in (("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)):
        runs = [PerturbationConfidenceMetric(remover(p, NoisyLinearImputer(noise=0.0)))(
            torch.from_numpy(x), maps, targets, net, return_diff=False) for p in pct]
        ref[key] = np.mean(runs, axis=0)
    np.testing.assert_allclose(ours["morf"], ref["morf"], atol=1e-5)
    np.testing.assert_allclose(ours["lerf"], ref["lerf"], atol=1e-5)
    np.testing.assert_allclose(ours["combined"], (ref["lerf"] - ref["morf"]) / 2, atol=1e-5)
    noisy = metrics.road(ex, x, maps, t, percentiles=pct)  # default noise 0.01: close to the noiseless values
    np.testing.assert_allclose(noisy["morf"], ours["morf"], atol=0.05)


# ---------------------------------------------------------------------------------------------- pointing


def test_pointing_game_on_synthetic_maps():
    masks = np.zeros((3, 64, 64), bool)
    masks[:, 20:30, 20:30] = True
    maps = np.zeros((3, 64, 64))
    maps[0, 25, 25] = 1  # inside
    maps[1, 25, 29 + 15] = 1  # exactly 15 px right of the box
    maps[2, 29 + 12, 29 + 12] = 1  # √(12² + 12²) ≈ 17 px diagonal from the corner
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks), [1, 1, 0])
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks, tolerance=18), [1, 1, 1])
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks, tolerance=0), [1, 0, 0])


def test_boxes_and_class_average():
    masks = metrics.boxes_to_masks([[(2, 1, 4, 3)], [(0, 0, 1, 1), (8, 8, 20, 20)]], (10, 10))
    assert masks[0].sum() == 4 and masks[0, 1:3, 2:4].all()
    assert masks[1].sum() == 1 + 4 and masks[1, 0, 0] and masks[1, 9, 9]
    assert metrics.class_average([1, 1, 1, 0], [5, 5, 5, 7]) == 0.5  # per image it would be 0.75


def test_energy_pointing_game():
    masks = np.zeros((2, 10, 10), bool)
    masks[:, :5] = True
    maps = np.ones((2, 10, 10))
    maps[1, :5] = 3  # 150 of 200 on the object
    np.testing.assert_allclose(metrics.energy_pointing_game(maps, masks), [0.5, 0.75])


def test_top_k_pointing_on_traces():
    maps = np.array([[0, 5, -4, 0, 1, 0], [3, 0, 0, 0, 0, 1]], float)  # signs do not matter: |map|
    masks = np.array([[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]], bool)
    np.testing.assert_allclose(metrics.top_k_pointing(maps, masks, 1), [1, 0])
    np.testing.assert_allclose(metrics.top_k_pointing(maps, masks, 2), [5 / 9, 1 / 4])  # top 2: {5, 4} and {3, 1}
    with pytest.raises(OnnxcamError, match="k must be"):
        metrics.top_k_pointing(maps, masks, 7)


# ---------------------------------------------------------------------------------------------- structure


def test_gini_extremes_and_pairwise_definition():
    one_hot = np.zeros((1, 20, 20))
    one_hot[0, 3, 4] = 5
    np.testing.assert_allclose(metrics.gini(one_hot), [1 - 1 / 400])
    np.testing.assert_allclose(metrics.gini(np.full((1, 20, 20), 0.3)), [0], atol=1e-12)
    v = np.random.default_rng(0).random((3, 7, 9))
    flat = v.reshape(3, -1)
    n = flat.shape[1]  # Gini = mean absolute difference / (2 · mean): the textbook form
    pairwise = np.abs(flat[:, :, None] - flat[:, None, :]).sum((1, 2)) / (2 * n * flat.sum(1))
    np.testing.assert_allclose(metrics.gini(v), pairwise, rtol=1e-10)


def test_top_k_mass():
    m = np.zeros((1, 10, 10))
    m[0].flat[:5] = 2  # 5 of 100 pixels hold 10 of 15
    m[0].flat[5:10] = 1
    np.testing.assert_allclose(metrics.top_k_mass(m, 0.05), [10 / 15])
    np.testing.assert_allclose(metrics.top_k_mass(np.ones((1, 10, 10)), 0.2), [0.2])


def test_gradient_map_clips_the_top_percent():
    g = np.zeros((1, 3, 10, 10))
    g[0, 0] = np.arange(100).reshape(10, 10)
    g[0, 1] = -np.arange(100).reshape(10, 10)  # |g| summed over channels: 2·k
    g[0, 0, 9, 9] = 1e6  # one outlier, clipped to the 99th percentile
    m = metrics.gradient_map(g)
    summed = np.r_[2 * np.arange(99.0), 1e6 + 99]
    expected = np.minimum(summed, np.percentile(summed, 99))
    assert expected[-1] < 1e5
    np.testing.assert_allclose(m[0].ravel(), expected / expected.max(), rtol=1e-6)


def test_group_sparsity():
    g = np.zeros((1, 2, 28, 28))
    g[0, 1, 14:, :14] = np.random.default_rng(0).standard_normal((14, 14))
    np.testing.assert_allclose(metrics.group_sparsity(g, 14), [1.0])
    np.testing.assert_allclose(metrics.group_sparsity(np.ones((1, 2, 28, 28)), 14), [np.sqrt(8)])
    np.testing.assert_allclose(metrics.group_sparsity(np.ones((1, 30, 30)), 14), [(4 * 14 + 4 * np.sqrt(28) + np.sqrt(4)) / 30])


def test_connected_components_on_a_drawn_map():
    m = np.zeros((2, 40, 40))
    m[0, 2:6, 2:6] = 1  # 16 px
    m[0, 20:30, 20:22] = 0.9  # 20 px
    m[0, 6, 6] = 0.8  # touches the first square diagonally: 8-connected
    m[0, 35, 35] = 0.3  # below 0.5 · range
    m[1, 10:20, 10:20] = 1
    count, size = metrics.connected_components(m)
    np.testing.assert_array_equal(count, [2, 1])
    np.testing.assert_allclose(size, [(17 + 20) / 2, 100])


# ---------------------------------------------------------------------------------------------- worst case


@pytest.mark.parametrize("norm", ["linf", "l2", "l1", "group", "elastic"])
def test_worst_case_on_linear_model_is_exact(norm):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * SIZE * SIZE, 4)).astype(np.float32)
    ex = onnxcam.Explainer(linear_model(w, rng.standard_normal(4).astype(np.float32)))
    x = images(2)
    t = [1, 3]
    eps, eps2 = 0.01, 0.002
    r = metrics.worst_case(ex, x, t, norm, eps, eps2=eps2, patch=5)
    g = 2 * w[:, t].T.reshape(2, 3, SIZE, SIZE).astype(np.float64)  # ∂y_t/∂x
    flat = g.reshape(2, -1)
    if norm == "group":  # Σ over 5×5 blocks per channel (4×4 at the edges: 16 = 3·5 + 1)
        dual = eps * sum(np.linalg.norm(g[:, c, a : a + 5, b : b + 5].reshape(2, -1), axis=1)
                         for c in range(3) for a in range(0, SIZE, 5) for b in range(0, SIZE, 5))
    else:
        dual = {"linf": eps * np.abs(flat).sum(1), "l2": eps * np.linalg.norm(flat, axis=1),
                "l1": eps * np.abs(flat).max(1),
                "elastic": eps * np.abs(flat).sum(1) + eps2 * (flat**2).sum(1)}[norm]
    np.testing.assert_allclose(r["dual"], dual, rtol=1e-5)
    predicted = dual if norm != "elastic" else dual + eps2 * (flat**2).sum(1)
    np.testing.assert_allclose(r["predicted"], predicted, rtol=1e-5)
    np.testing.assert_allclose(r["actual"], r["predicted"], rtol=2e-3)  # linear: first order is exact
    d = r["delta"].reshape(2, -1)
    size = {"linf": np.abs(d).max(1), "l2": np.linalg.norm(d, axis=1), "l1": np.abs(d).sum(1)}.get(norm)
    if size is not None:
        np.testing.assert_allclose(size, eps, rtol=1e-5)
        assert (np.abs(r["random"]) <= r["predicted"] * (1 + 1e-3)).all()  # Hölder: no δ in the ball does better


def test_worst_case_first_order_on_smooth_cnn(cnn):
    net, ex = cnn
    x = images(2, seed=9)
    r = metrics.worst_case(ex, x, [0, 1], "l2", 1e-3)
    np.testing.assert_allclose(r["actual"], r["predicted"], rtol=0.05)
    xt = torch.from_numpy(x).requires_grad_()
    net(xt)[[0, 1], [0, 1]].sum().backward()
    np.testing.assert_allclose(r["dual"], 1e-3 * xt.grad.reshape(2, -1).norm(dim=1).numpy(), rtol=1e-4)


# ---------------------------------------------------------------------------------------------- stability


def test_max_sensitivity_matches_captum(cnn):
    from captum.metrics import sensitivity_max

    net, ex = cnn
    x = images(2, seed=10)
    t = np.array([2, 0])
    ours = metrics.max_sensitivity(ex, x, t, "gradcam", radius=0.05, samples=4, seed=3)
    noise = np.random.default_rng(3).uniform(-0.05, 0.05, (8, 3, SIZE, SIZE)).astype(np.float32)

    def explain(inputs, target):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        return (torch.from_numpy(ex.explain(inputs.numpy(), method="gradcam", target=target.numpy()).heatmap),)

    ref = sensitivity_max(explain, torch.from_numpy(x), perturb_func=lambda inp: inp + torch.from_numpy(noise),
                          n_perturb_samples=4, target=torch.from_numpy(t))
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-4, atol=1e-6)
    assert (ours > 0).all()


def test_step_convergence_matches_captum_ig(cnn):
    from captum.attr import IntegratedGradients

    net, ex = cnn
    x = images(2, seed=11)
    t = [3, 1]
    ours = metrics.step_convergence(ex, x, t, "ig", 3)
    ig = IntegratedGradients(net)
    a, b = (ig.attribute(torch.from_numpy(x), target=torch.tensor(t), n_steps=m, method="gausslegendre").double()
            for m in (3, 6))
    a, b = (m.reshape(2, -1) / m.reshape(2, -1).norm(dim=1, keepdim=True) for m in (a, b))
    ref = (a - b).norm(dim=1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-2)
    with pytest.raises(OnnxcamError, match="no option 'steps'"):
        metrics.step_convergence(ex, x, t, "gradcam", 3)


# ---------------------------------------------------------------------------------------------- baselines


def test_random_and_center_baselines(cnn):
    _, ex = cnn
    x = images(2)
    a = ex.explain(x, method="random", seed=1)
    b = ex.explain(x, method="random", seed=1)
    c = ex.explain(x, method="random", seed=2)
    assert a.heatmap.shape == (2, SIZE, SIZE) and a.heatmap.min() == 0 and np.isclose(a.heatmap.max(), 1, atol=1e-6)
    np.testing.assert_array_equal(a.heatmap, b.heatmap)
    assert not np.allclose(a.heatmap, c.heatmap) and not np.allclose(a.heatmap[0], a.heatmap[1])
    np.testing.assert_array_equal(ex.explain(x[1:], method="random", seed=1).heatmap[0], a.heatmap[1])  # per image
    with torch.no_grad():
        logits = Net()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(a.logits, logits, atol=1e-5)
    np.testing.assert_array_equal(a.target, logits.argmax(1))
    center = ex.explain(x, method="center", target=2)
    h = center.heatmap[0]
    assert h[SIZE // 2, SIZE // 2] > h[SIZE // 2, 0] > h[0, 0] and np.allclose(h, h[::-1, ::-1], atol=1e-6)
    assert (center.target == 2).all() and np.array_equal(center.heatmap[0], center.heatmap[1])
    blocks = ex.explain(x, method="random", cell=4).heatmap[0]
    assert len(np.unique(blocks)) == 16


def test_cli_explain_random_baseline(tmp_path):
    out = subprocess.run([sys.executable, "-m", "onnxcam", "explain", ROOT / "models" / "efficientnet_lite0.onnx",
                          ROOT / "models" / "samples" / "cat.jpg", "--method", "random", "--out", tmp_path],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    saved = np.load(tmp_path / "cat_random.npy")
    assert saved.shape[-2:] == (224, 224) and saved.min() == 0 and np.isclose(saved.max(), 1, atol=1e-6)


# ---------------------------------------------------------------------------------------------- registry, bad input


def test_metrics_registry(cnn):
    _, ex = cnn
    x, s = images(2), distinct_maps()
    for name in ("deletion", "insertion", "avg-drop", "increase", "gini", "top-k", "components"):
        v = metrics.METRICS[name].fn(ex, x, s, [0, 1])
        assert v.shape == (2,) and np.isfinite(v).all(), name
    masks = s > 0.5
    np.testing.assert_array_equal(metrics.METRICS["pointing"].fn(ex, x, s, [0, 1], masks=masks), [1, 1])
    with pytest.raises(OnnxcamError, match="masks"):
        metrics.METRICS["energy-pointing"].fn(ex, x, s, [0, 1])


@pytest.mark.parametrize("call, words", [
    (lambda ex, x, s: metrics.deletion(ex, x, s[:1], [0, 0]), "1 maps for 2 images"),
    (lambda ex, x, s: metrics.insertion(ex, x, s[:, :8], [0, 0]), "input resolution"),
    (lambda ex, x, s: metrics.deletion(ex, x, np.where(s > 0.5, np.nan, s), [0, 0]), "NaN"),
    (lambda ex, x, s: metrics.deletion(ex, x[:0], s[:0], []), "empty"),
    (lambda ex, x, s: metrics.deletion(ex, x, s, [0]), "2 ints"),
    (lambda ex, x, s: metrics.deletion(ex, x, s, [0, 9]), "out of range"),
    (lambda ex, x, s: metrics.deletion(ex, x, s, [0, 0], step=0), "step"),
    (lambda ex, x, s: metrics.road(ex, x, s, [0, 0], percentiles=(0, 50)), "percentiles"),
    (lambda ex, x, s: metrics.confidence_change(ex, x, -s, [0, 0]), "negative"),
    (lambda ex, x, s: metrics.worst_case(ex, x, [0, 0], "l3", 0.1), "unknown norm"),
    (lambda ex, x, s: metrics.worst_case(ex, x, [0, 0], "l2", -1), "eps"),
    (lambda ex, x, s: metrics.pointing_game(s, s > 2), "empty"),
    (lambda ex, x, s: metrics.pointing_game(s, (s > 0.5)[:, :4]), "masks have shape"),
    (lambda ex, x, s: metrics.gini(np.zeros((1, 4, 4))), "all zero"),
    (lambda ex, x, s: metrics.gini(np.zeros((0, 4, 4))), "N >= 1"),
    (lambda ex, x, s: metrics.top_k_mass(s, 0), "fraction"),
    (lambda ex, x, s: metrics.connected_components(s, 1.5), "threshold"),
    (lambda ex, x, s: metrics.max_sensitivity(ex, x, [0, 0], "nosuch"), "unknown method"),
])
def test_bad_input_is_one_line_error(cnn, call, words):
    _, ex = cnn
    with pytest.raises(OnnxcamError) as e:
        call(ex, images(2), distinct_maps())
    assert words in str(e.value) and "\n" not in str(e.value)


def test_channels_last_model_takes_its_layout_or_nchw():
    nhwc = mean_model()
    nhwc.graph.input[0].type.tensor_type.shape.dim[1].dim_value = SIZE
    nhwc.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 3
    ex_last, ex_first = onnxcam.Explainer(nhwc), onnxcam.Explainer(mean_model())
    assert ex_last.model.layout == "NHWC"
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, SIZE, SIZE)).astype(np.float32)
    s = distinct_maps()
    reference = metrics.insertion(ex_first, x, s, [0, 0], step=9).scores
    for given in (x, x.transpose(0, 2, 3, 1)):  # NCHW as evaluate passes it, or the model's own layout
        np.testing.assert_allclose(metrics.insertion(ex_last, given, s, [0, 0], step=9).scores, reference, atol=1e-6)
