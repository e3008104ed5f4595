"""Exported explainer models (onnxcam.export) run in a bare onnxruntime and give Explainer's heatmaps.

Every exported model is run in a subprocess that imports only numpy and onnxruntime (it asserts that
onnxcam was never imported), with graph optimizations disabled and with ORT_ENABLE_ALL, at batch 1 (the
default `target`) and batch 3 (mixed targets: top-1 and an explicit class). Heatmaps must equal
`Explainer.explain` with the same options to 1e-4. Noise methods are compared with sigma = 0: the exported
noise comes from RandomNormalLike, Explainer's from numpy, so only the in-graph math is comparable; with
sigma > 0 the test checks that the noise is applied and that a fresh session reproduces it.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxcam
from onnxcam.export import ROWS
from onnxcam.image import Preprocessing, read_rgb
from onnxcam.triton import triton_entry

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLES = ROOT / "models" / "samples"
sys.path.insert(0, str(ROOT / "tools"))
from benchlib import calibrate_batchnorm  # noqa: E402

TOL = 1e-4
LEVELS = ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL")

CASES = {  # small step counts keep the file fast; the graphs are the same for any count
    "gradcam": {},
    "gradcam++": {},
    "xgradcam": {},
    "layercam": {},
    "hirescam": {},
    "rsi-gradcam": {"steps": 4},
    "integrated-gradcam": {"steps": 4},
    "smooth-gradcam++": {"samples": 2, "sigma": 0.0},
    "ig": {"steps": 3},
    "saliency": {},
    "smoothgrad": {"samples": 2, "sigma": 0.0},
}
VARIANTS = {  # non-default options, on the demo model only, batch 3 with optimizations
    "rsi-logit-left-baseline": ("rsi-gradcam", {"steps": 3, "score": "logit", "grad_relu": False, "rule": "left",
                                                "baseline": -0.5}),
    "ig-trapezoid-baseline": ("ig", {"steps": 2, "quadrature": "riemann_trapezoid", "baseline": 0.25}),
    "smoothgrad_sq": ("smoothgrad", {"samples": 2, "sigma": 0.0, "variant": "smoothgrad_sq"}),
    "smooth-gradcam++-subset": ("smooth-gradcam++", {"samples": 2, "sigma": 0.0, "channels": list(range(0, 1280, 3))}),
}

RUNNER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime as ort

    for job in json.load(open(sys.argv[1])):
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, job["level"])
        options.log_severity_level = 3
        session = ort.InferenceSession(job["model"], options, providers=["CPUExecutionProvider"])
        feeds = dict(np.load(job["feeds"]))
        names = [o.name for o in session.get_outputs()]
        np.savez(job["out"], **dict(zip(names, session.run(None, feeds))),
                 input_names=np.array([i.name for i in session.get_inputs()]),
                 overridable=np.array([i.name for i in session.get_overridable_initializers()] or [""]))
    assert "onnxcam" not in sys.modules, "the runner must not import onnxcam"
    print("bare onnxruntime", ort.__version__)
""")


def run_bare(jobs: list[dict], folder: Path) -> list[dict]:
    """Run the jobs in a subprocess that imports only numpy and onnxruntime; returns each job's outputs."""
    (folder / "runner.py").write_text(RUNNER)
    (folder / "jobs.json").write_text(json.dumps(jobs))
    result = subprocess.run([sys.executable, "-I", str(folder / "runner.py"), str(folder / "jobs.json")],
                            capture_output=True, text=True, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bare onnxruntime" in result.stdout
    return [dict(np.load(job["out"])) for job in jobs]


def resnet18(path: Path, size: int = 112) -> Path:
    """torchvision ResNet-18, seeded random weights with BatchNorm statistics measured on noise (so maps are not
    degenerate), legacy export: opset 17, dynamic batch, IR 8."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    calibrate_batchnorm(model, size, batch=8)
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.randn(2, 3, size, size),), buf, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load_model_from_string(buf.getvalue())
    proto.ir_version = 8
    onnx.save(proto, path)
    return path


def demo_images() -> np.ndarray:
    prep = Preprocessing((224, 224))
    cat, coffee = (prep(read_rgb(SAMPLES / f))[0] for f in ("cat.jpg", "coffee.jpg"))
    return np.stack([cat, coffee, cat[:, :, ::-1]]).astype(np.float32)


@contextlib.contextmanager
def optimizations_disabled():
    """Explainer's sessions made with ORT_DISABLE_ALL: the reference for an exported model run that way
    (input gradients through ReLU6/ReLU kinks differ by ~1e-2 between optimization levels: fused kernels
    round differently, and an activation that lands on a kink flips its gradient)."""
    import onnxruntime as ort

    from onnxcam import runner, runtime

    def make(model, device="auto", threads=0, weights=None, spin=False):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        data = model if isinstance(model, bytes) else model.SerializeToString()
        return ort.InferenceSession(data, options, providers=runtime.providers_for(device))

    saved = runner.make_session
    runner.make_session = make
    try:
        yield
    finally:
        runner.make_session = saved


class Suite:
    """One model: every case exported and run once in the bare subprocess; references from Explainer (the tests
    take them through the per-row engine: see conftest.per_row_engine)."""

    def __init__(self, model: Path, x: np.ndarray, cases: dict, folder: Path, levels=LEVELS, brief=()):
        self.model, self.x, self.folder = model, x, folder
        self.ex = onnxcam.Explainer(str(model))
        self.plain = onnxcam.Explainer(self.ex.model)  # its sessions get made with optimizations disabled
        self.cases = cases
        top = self.ex.explain(x, method="saliency").logits
        self.top1 = top.argmax(-1)
        # image 1 gets an explicit class: its second-ranked one (a real class with signal at the layer)
        self.targets = np.array([-1, int(np.argsort(-top[1])[1]), -1], np.int64)
        feeds1, feeds3 = folder / "feeds1.npz", folder / "feeds3.npz"
        np.savez(feeds1, input=x[:1])  # no target: the default [-1] applies
        np.savez(feeds3, input=x, target=self.targets)
        jobs, self.protos = [], {}
        for key, (method, opts) in cases.items():
            proto = onnxcam.export(self.ex.model, method, **opts)
            self.protos[key] = proto
            path = folder / f"{key}.onnx"
            onnx.save(proto, path)
            for batch, feeds in ((3, feeds3),) if key in brief else ((1, feeds1), (3, feeds3)):
                for level in levels if batch == 3 and key not in brief else levels[:1]:
                    jobs.append({"key": key, "batch": batch, "level": level, "model": str(path), "feeds": str(feeds),
                                 "out": str(folder / f"{key}-{batch}-{level}.npz")})
        np.savez(folder / "plain.npz", input=x)
        jobs.append({"key": "original", "batch": 3, "level": LEVELS[0], "model": str(model), "feeds": str(folder / "plain.npz"),
                     "out": str(folder / "original.npz")})
        self.results = {(j["key"], j["batch"], j["level"]): r for j, r in zip(jobs, run_bare(jobs, folder))}

    def reference(self, key: str, batch: int, level: str):
        method, opts = self.cases[key]
        chosen = np.where(self.targets < 0, self.top1, self.targets)
        target = None if batch == 1 else chosen
        if level == "ORT_DISABLE_ALL":
            with optimizations_disabled():
                return self.plain.explain(self.x[:batch], method=method, target=target, **opts)
        return self.ex.explain(self.x[:batch], method=method, target=target, **opts)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Suite:
    cases = {k: (k, v) for k, v in CASES.items()} | VARIANTS
    return Suite(DEMO, demo_images(), cases, tmp_path_factory.mktemp("export-demo"), brief=set(VARIANTS))


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> Suite:
    folder = tmp_path_factory.mktemp("export-resnet18")
    model = resnet18(folder / "resnet18.onnx")
    x = np.random.default_rng(0).standard_normal((3, 3, 112, 112)).astype(np.float32)
    cases = {k: (k, v) for k, v in CASES.items()}
    # random weights: from the default black baseline the probability path is flat and the RSI map constant
    cases["rsi-gradcam"] = ("rsi-gradcam", {**CASES["rsi-gradcam"], "baseline": 0.0})
    ex = onnxcam.Explainer(str(model))
    mid = [name for name in ex.layers if "layer3" in name][-1]  # 7×7 map: the backward pass crosses layer4
    cases["rsi-gradcam@layer3"] = ("rsi-gradcam", {"steps": 3, "layer": mid, "baseline": 0.0})
    cases["gradcam@layer3"] = ("gradcam", {"layer": mid})
    return Suite(model, x, cases, folder, levels=LEVELS[:1])


def _check_matches(suite: Suite, key: str, errors: dict) -> None:
    method, opts = suite.cases[key]
    original = suite.results[("original", 3, LEVELS[0])]
    for (k, batch, level), out in suite.results.items():
        if k != key:
            continue
        ref = suite.reference(key, batch, level)
        assert out["heatmap"].shape == ref.heatmap.shape
        err = float(np.abs(out["heatmap"] - ref.heatmap).max())
        errors[(suite.model.stem, key, batch, level)] = err
        assert err <= TOL, f"{key} batch {batch} {level}: heatmap differs from Explainer by {err:.2e}"
        assert out["heatmap"].min() >= 0 and out["heatmap"].max() <= 1
        if ref.cam is not None:
            scale = max(np.abs(ref.cam).max(), 1e-30)
            assert np.abs(out["cam"] - ref.cam).max() / scale <= TOL
            assert "attribution" not in out
        else:
            scale = max(np.abs(ref.attribution).max(), 1e-30)
            assert np.abs(out["attribution"] - ref.attribution).max() / scale <= TOL
            assert "cam" not in out
        logits = original["logits"][:batch]
        assert np.abs(out["logits"] - logits).max() <= 1e-4 * max(1.0, np.abs(logits).max())  # the model's own output
        assert list(out["input_names"]) == ["input"] and list(out["overridable"]) == ["target"]


ERRORS: dict = {}


@pytest.mark.parametrize("key", [*CASES, *VARIANTS])
def test_demo_export_matches_explainer(demo, key, per_row_engine):
    _check_matches(demo, key, ERRORS)


@pytest.mark.parametrize("key", [*CASES, "rsi-gradcam@layer3", "gradcam@layer3"])
def test_resnet18_export_matches_explainer(resnet, key, per_row_engine):
    _check_matches(resnet, key, ERRORS)


def test_print_max_errors(demo, resnet):
    """Not a check: the max heatmap error per method, for the record (pytest -s shows it)."""
    per = {}
    for (model, key, _, _), err in ERRORS.items():
        per[f"{model}/{key}"] = max(per.get(f"{model}/{key}", 0.0), err)
    print("\nmax |heatmap − Explainer| per case:", json.dumps({k: f"{v:.1e}" for k, v in per.items()}, indent=1))


@pytest.mark.parametrize("key", [*CASES, *VARIANTS])
def test_demo_export_is_a_valid_small_model(demo, key):
    proto = demo.protos[key]
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == 8 and [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    size = len(proto.SerializeToString())
    assert size <= 1.05 * DEMO.stat().st_size, f"{size / DEMO.stat().st_size:.3f}x the original: weights duplicated?"
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    assert [i.name for i in g.input if i.name not in inits] == ["input"]
    assert onnx.numpy_helper.to_array(inits["target"]).tolist() == [-1] and "target" in [i.name for i in g.input]
    method = demo.cases[key][0]
    extra = ["heatmap", "attribution"] if method in ("ig", "saliency", "smoothgrad") else ["heatmap", "cam"]
    assert [o.name for o in g.output] == ["logits", *extra]
    conv_weights = [n.input[1] for n in g.node if n.op_type == "Conv"]
    assert len(conv_weights) == len(set(conv_weights))  # the network appears once
    if method not in ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "saliency"):
        assert any(ROWS in n.input for n in g.node)  # the steps run as rows of one batch


def test_resnet18_file_size(resnet):
    for key, proto in resnet.protos.items():
        ratio = len(proto.SerializeToString()) / resnet.model.stat().st_size
        assert ratio <= 1.05, f"{key}: {ratio:.3f}x the original"


def test_single_explicit_target_serves_every_image(demo, tmp_path):
    proto = demo.protos["gradcam"]
    path = tmp_path / "gradcam.onnx"
    onnx.save(proto, path)
    np.savez(tmp_path / "feeds.npz", input=demo.x, target=np.array([281], np.int64))
    job = {"model": str(path), "feeds": str(tmp_path / "feeds.npz"), "level": "ORT_ENABLE_ALL", "out": str(tmp_path / "o.npz")}
    (out,) = run_bare([job], tmp_path)
    ref = demo.ex.explain(demo.x, method="gradcam", target=281)
    assert np.abs(out["heatmap"] - ref.heatmap).max() <= TOL


@pytest.mark.parametrize("method", ["smooth-gradcam++", "smoothgrad"])
def test_noise_is_applied_and_reproducible_per_fresh_session(demo, method, tmp_path):
    """sigma > 0: RandomNormalLike(seed) noise. A fresh session draws the same noise (same first result);
    the map differs from the noise-free one. Explainer draws numpy noise, so it is not compared here."""
    proto = onnxcam.export(demo.ex.model, method, samples=1 if method == "smoothgrad" else 2, sigma=0.2, seed=3)
    path = tmp_path / "noisy.onnx"
    onnx.save(proto, path)
    np.savez(tmp_path / "feeds.npz", input=demo.x[:2])
    jobs = [{"model": str(path), "feeds": str(tmp_path / "feeds.npz"), "level": level, "out": str(tmp_path / f"{i}.npz")}
            for i, level in enumerate(["ORT_ENABLE_ALL", "ORT_ENABLE_ALL", "ORT_DISABLE_ALL"])]
    first, again, plain = run_bare(jobs, tmp_path)
    np.testing.assert_array_equal(first["heatmap"], again["heatmap"])
    clean = demo.results[(method, 3, LEVELS[0])]["heatmap"][:2]
    assert np.abs(first["heatmap"] - clean).max() > 1e-2
    for out in (first, plain):
        assert np.isfinite(out["heatmap"]).all() and out["heatmap"].min() >= 0 and out["heatmap"].max() <= 1


def tiny_model(kind: str, opset: int) -> tuple[onnx.ModelProto, str, tuple]:
    """A channels-last model explained at an NHWC layer, or a model explained at a token sequence (N, T, D)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "fc")
    pool = [1, 2] if kind == "nhwc" else [1]
    axes = numpy_helper.from_array(np.array(pool, np.int64), "axes")
    mean = (helper.make_node("ReduceMean", ["feat", "axes"], ["pooled"], keepdims=0) if opset >= 18 else
            helper.make_node("ReduceMean", ["feat"], ["pooled"], axes=pool, keepdims=0))
    if kind == "nhwc":
        shape = (12, 12, 3)
        nodes = [helper.make_node("Transpose", ["x"], ["xc"], perm=[0, 3, 1, 2]),
                 helper.make_node("Conv", ["xc", "w"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("Tanh", ["c"], ["t"]),
                 helper.make_node("Transpose", ["t"], ["feat"], perm=[0, 2, 3, 1])]
        inits = [w, fc, axes]
    else:
        shape = (3, 16, 16)
        patch = numpy_helper.from_array(np.array([0, 6, 16], np.int64), "patch")
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[4, 4], pads=[1, 1, 1, 1]),  # (N, 6, 4, 4)
                 helper.make_node("Reshape", ["c", "patch"], ["seq"]),
                 helper.make_node("Transpose", ["seq"], ["tok"], perm=[0, 2, 1]),  # (N, 16, 6) tokens
                 helper.make_node("Tanh", ["tok"], ["feat"])]
        inits = [w, fc, axes, patch]
    nodes += [mean, helper.make_node("MatMul", ["pooled", "fc"], ["y"])]
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, "feat", shape


@pytest.mark.parametrize("kind, opset, layout", [("nhwc", 17, "NHWC"), ("nhwc", 18, "NHWC"), ("tokens", 17, "NTD")])
def test_channels_last_and_token_layers(tmp_path, kind, opset, layout):
    """Layers read as grids in the graph like methods.common.to_grid; opset 18's Reduce* take axes as inputs."""
    model, layer, shape = tiny_model(kind, opset)
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    ex = onnxcam.Explainer(str(path), layer=layer)
    assert ex.layer.layout == layout
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x)
    jobs = []
    for method, opts in (("hirescam", {}), ("rsi-gradcam", {"steps": 3, "score": "logit"}),
                         ("smooth-gradcam++", {"samples": 2, "sigma": 0.0}), ("smoothgrad", {"samples": 2, "sigma": 0.0})):
        proto = onnxcam.export(ex.model, method, layer=layer, **opts)
        onnx.checker.check_model(proto, full_check=True)
        assert [o.version for o in proto.opset_import] == [opset]
        onnx.save(proto, tmp_path / f"{method}.onnx")
        jobs.append({"model": str(tmp_path / f"{method}.onnx"), "feeds": str(tmp_path / "f.npz"), "level": "ORT_ENABLE_ALL",
                     "out": str(tmp_path / f"{method}.npz"), "method": method, "opts": opts})
    for job, out in zip(jobs, run_bare(jobs, tmp_path)):
        ref = ex.explain(x, method=job["method"], **job["opts"])
        assert np.abs(out["heatmap"] - ref.heatmap).max() <= TOL, job["method"]
        if ref.cam is not None:
            assert np.abs(out["cam"] - ref.cam).max() <= TOL * np.abs(ref.cam).max()


def test_triton_entry(demo, tmp_path):
    proto = demo.protos["rsi-gradcam"]
    entry = triton_entry(proto, tmp_path / "repo", "effnet_rsi", max_batch_size=4)
    config = (entry / "config.pbtxt").read_text()
    for line in ('name: "effnet_rsi"', 'platform: "onnxruntime_onnx"', "max_batch_size: 4", "dynamic_batching { }",
                 '{ name: "input" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }',
                 '{ name: "target" data_type: TYPE_INT64 dims: [ 1 ] reshape: { shape: [ ] } }',
                 '{ name: "logits" data_type: TYPE_FP32 dims: [ 1000 ] }',
                 '{ name: "heatmap" data_type: TYPE_FP32 dims: [ 224, 224 ] }',
                 '{ name: "cam" data_type: TYPE_FP32 dims: [ 7, 7 ] }'):
        assert line in config, config
    served = onnx.load(entry / "1" / "model.onnx")
    onnx.checker.check_model(served, full_check=True)
    # Triton's onnxruntime backend takes no optional inputs on batching models: `target` is a plain input there
    assert "target" not in {t.name for t in served.graph.initializer}
    np.savez(tmp_path / "f.npz", input=demo.x, target=demo.targets)
    job = {"model": str(entry / "1" / "model.onnx"), "feeds": str(tmp_path / "f.npz"), "level": "ORT_ENABLE_ALL",
           "out": str(tmp_path / "o.npz")}
    (out,) = run_bare([job], tmp_path)
    assert list(out["input_names"]) == ["input", "target"]
    np.testing.assert_allclose(out["heatmap"], demo.results[("rsi-gradcam", 3, LEVELS[0])]["heatmap"], atol=1e-6)


def test_cli_export_writes_model_and_triton_entry(tmp_path):
    out, repo = tmp_path / "out" / "explain.onnx", tmp_path / "repo"
    result = subprocess.run([sys.executable, "-m", "onnxcam", "export", str(DEMO), "--method", "integrated-gradcam",
                             "--steps", "2", "-o", str(out), "--triton", str(repo)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and (repo / "explain" / "config.pbtxt").is_file() and (repo / "explain" / "1" / "model.onnx").is_file()
    props = {p.key: p.value for p in onnx.load(out, load_external_data=False).metadata_props}
    assert props["onnxcam.method"] == "integrated-gradcam" and json.loads(props["onnxcam.options"])["steps"] == 2


@pytest.mark.parametrize("args, words, code", [
    (["--method", "gradcam", "--steps", "4"], ["--steps", "gradcam"], 2),
    (["--method", "scorecam"], ["scorecam"], 2),
    (["--method", "gradcam", "--layer", "nope"], ["unknown layer"], 2),
    (["--method", "rsi-gradcam", "--steps", "0"], ["steps"], 2),
    (["--method", "ig", "--quadrature", "riemann_trapezoid", "--steps", "1"], ["steps >= 2"], 2),
])
def test_cli_export_errors_are_one_line(tmp_path, args, words, code):
    result = subprocess.run([sys.executable, "-m", "onnxcam", "export", str(DEMO), *args, "-o", str(tmp_path / "o.onnx")],
                            capture_output=True, text=True)
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_api_rejects_options_that_do_not_export():
    with pytest.raises(onnxcam.OnnxcamError, match="batch_size"):
        onnxcam.export(str(DEMO), "rsi-gradcam", steps=2, batch_size=4)
    with pytest.raises(onnxcam.OnnxcamError, match="path"):
        onnxcam.export(str(DEMO), "rsi-gradcam", steps=2, path="activation")
    with pytest.raises(onnxcam.OnnxcamError, match="cannot be exported"):
        onnxcam.export(str(DEMO), "igos")
    with pytest.raises(onnxcam.OnnxcamError, match="no option"):
        onnxcam.export(str(DEMO), "gradcam", steps=3)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_float16_layer_exports_a_model_that_loads_and_matches_the_explainer(method, per_row_engine):
    # fuzz finding: the CAM math ran in the layer's float16 against float32 constants and a float32 `cam` output,
    # and ONNX Runtime refused the exported model (type error at cam); the layer is now read in float32
    import onnxruntime as ort

    model = ROOT / "tests" / "fixtures" / "wild" / "resnetish_fp16_io32.onnx"
    session = ort.InferenceSession(onnxcam.export(str(model), method).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    heatmap = session.run(["heatmap"], {"input": x})[0]
    np.testing.assert_allclose(heatmap, onnxcam.Explainer(str(model), device="cpu").explain(x, method=method).heatmap,
                               atol=TOL)
