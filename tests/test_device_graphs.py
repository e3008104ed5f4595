"""The gradient graph for GPU providers (plain ops) and the one for ONNX Runtime's CPU (blocked-layout forms) compute
the same gradients, checked on the CPU provider, and differ only in the forms the CPU layout needs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnxruntime as ort
import pytest
from fuzz import small_cnn

import onnxcam
from onnxcam.autodiff import grad_name

ROOT_MODELS = ("small_cnn", "demo")


def graph_pair(name: str):
    from pathlib import Path

    model = small_cnn() if name == "small_cnn" else str(Path(__file__).parents[1] / "models" / "efficientnet_lite0.onnx")
    m = onnxcam.load_model(model)
    wrt = [m.image_input, onnxcam.Explainer(m).layer.name]
    return m, wrt, [onnxcam.gradient_model(m, wrt, m.logits, cpu=cpu) for cpu in (True, False)]


@pytest.mark.parametrize("name", ROOT_MODELS)
def test_cpu_and_gpu_variants_give_the_same_gradients(name):
    m, wrt, (cpu, gpu) = graph_pair(name)
    x = np.random.default_rng(0).standard_normal((2, *m.input_shape[1:])).astype(np.float32)
    seed = np.zeros((2, 10 if name == "small_cnn" else 1000), np.float32)
    seed[:, 3] = 1
    results = []
    for proto in (cpu, gpu):
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        results.append(session.run([grad_name(w) for w in wrt], {m.image_input: x, "grad_seed": seed}))
    for a, b in zip(*results):
        assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()
    ops = [Counter(n.op_type for n in p.graph.node) for p in (cpu, gpu)]
    assert ops[0] != ops[1], "the CPU variant should use its blocked-layout forms here"
    plain_relu_masks = ops[1]["Greater"] + ops[1]["Where"]
    assert plain_relu_masks > 0 or ops[1]["Expand"] > ops[0]["Expand"]


def test_export_for_gpus_matches_the_cpu_export():
    from pathlib import Path

    demo = Path(__file__).parents[1] / "models" / "efficientnet_lite0.onnx"
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    maps = []
    for runs_on in ("cpu", "cuda"):
        proto = onnxcam.export(str(demo), "gradcam", runs_on=runs_on)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        maps.append(session.run(["heatmap"], {"input": x})[0])
    assert np.abs(maps[0] - maps[1]).max() <= 1e-5


def test_padded_chunks_give_the_unpadded_results(monkeypatch):
    """With TensorRT every run has the same batch (the last chunk padded); results are trimmed to the real rows."""
    ex = onnxcam.Explainer(small_cnn(), device="cpu")
    x = np.random.default_rng(2).standard_normal((5, 3, 32, 32)).astype(np.float32)
    plain = ex.explain(x, method="gradcam", batch_size=2)
    session = ex.session((ex.layer.name,), "logit", expose=(ex.layer.name,))
    fed = []
    run = session.session.run
    monkeypatch.setattr(session.session, "run", lambda names, feeds: fed.append(len(feeds["input"])) or run(names, feeds))
    session.pad = True
    padded = ex.explain(x, method="gradcam", batch_size=2)
    assert fed == [2, 2, 2]
    np.testing.assert_allclose(padded.heatmap, plain.heatmap, atol=1e-6)


def test_tensorrt_engine_cache_option(monkeypatch, tmp_path):
    from onnxcam.runtime import tensorrt_options

    assert tensorrt_options() == {}
    monkeypatch.setenv("ONNXCAM_TRT_CACHE", str(tmp_path))
    assert tensorrt_options() == {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(tmp_path)}
