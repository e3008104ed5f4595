"""The gradient graph for GPU providers (plain ops) and the one for ONNX Runtime's CPU (blocked-layout forms) compute
the same gradients, checked on the CPU provider, and differ only in the forms the CPU layout needs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
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
    plain = ex.explain(x, method="saliency", batch_size=2)
    session = ex.session((ex.model.image_input,), "logit")
    fed = []
    run = session.session.run
    monkeypatch.setattr(session.session, "run", lambda names, feeds: fed.append(len(feeds["input"])) or run(names, feeds))
    session.pad = True
    padded = ex.explain(x, method="saliency", batch_size=2)
    assert fed == [2, 2, 2]
    np.testing.assert_allclose(padded.heatmap, plain.heatmap, atol=1e-6)


def test_tensorrt_engine_cache_option(monkeypatch, tmp_path):
    from onnxcam.runtime import tensorrt_options

    assert tensorrt_options() == {}
    monkeypatch.setenv("ONNXCAM_TRT_CACHE", str(tmp_path))
    assert tensorrt_options() == {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(tmp_path)}


@pytest.mark.parametrize("lo, hi", [(0.0, 6.0), (-1.0, 1.0), (-6.5, 0.0), (0.25, 3.0)])
def test_clip_mask_in_the_blocked_layout_is_exact_at_and_next_to_the_bounds(lo, hi):
    """The CPU form of Clip's gradient (two 1×1 Convs and Clips) gives the strict mask lo < x < hi exactly: at the
    bounds, one ulp inside them, for the smallest normal floats and far outside. (Like the ReLU form, it scales the
    gradient of a value within a subnormal distance of a bound of 0 instead of passing it: not tested.)"""
    from onnx import TensorProto, helper, numpy_helper

    def inside(bound, toward):
        step = np.nextafter(np.float32(bound), np.float32(toward))
        return step if bound != 0 else np.copysign(np.finfo(np.float32).tiny, toward)

    near = [lo, inside(lo, hi), hi, inside(hi, lo), (lo + hi) / 2, lo - 1e30, hi + 1e30, 1.2e-38, -1.2e-38, 0.0]
    x = np.resize(np.array(near, np.float32), (1, 3, 4, 5))
    w = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "w")
    bounds = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in (("lo", lo), ("hi", hi))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
    graph = helper.make_graph(nodes, "clip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 5])], [w, *bounds])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    grads = []
    for cpu in (True, False):
        proto = onnxcam.gradient_model(model, ["c"], "y", cpu=cpu)
        assert any(n.op_type == "Greater" for n in proto.graph.node) != cpu
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        grads.append(session.run([grad_name("c")], {"x": x, "grad_seed": np.ones_like(x)})[0])
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(grads[1], ((x > lo) & (x < hi)).astype(np.float32))


@pytest.mark.parametrize("cpu", [True, False])
def test_a_pooled_layers_gradient_reports_its_value_per_channel(cpu):
    """A layer read only by GlobalAveragePool has the same gradient at every position; build_gradients names the
    tensor of that value, which the exporter uses for spatial means (Grad-CAM's weights)."""
    from onnxcam.autodiff.builder import build_gradients

    m = onnxcam.load_model(small_cnn())
    layer = onnxcam.Explainer(m).layer.name
    uniform: dict[str, str] = {}
    proto = build_gradients(m.proto, [layer], m.logits, cpu, uniform)
    assert set(uniform) == {layer}
    proto.graph.output.append(onnx.helper.make_tensor_value_info(uniform[layer], onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((2, *m.input_shape[1:])).astype(np.float32)
    seed = np.random.default_rng(3).standard_normal((2, 10)).astype(np.float32)
    g, value = session.run([grad_name(layer), uniform[layer]], {m.image_input: x, "grad_seed": seed})
    assert value.shape == (*g.shape[:2], 1, 1)
    np.testing.assert_allclose(np.broadcast_to(value, g.shape), g, rtol=1e-6, atol=0)
