"""The method API: one options schema (usage errors, exit code 2), per-image validity, layers resolved only when a
method needs one."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import onnxcam
from onnxcam import methods
from onnxcam.cli import main


def conv_net() -> onnx.ModelProto:
    """Conv without bias → ReLU → GAP → Gemm: an all-zero image has A = 0, so no map; any other image has one."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    return _model(nodes, inits, [3, 8, 8])


def mlp() -> onnx.ModelProto:
    """No spatial layer at all: Flatten → Gemm → Tanh → Gemm."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 48)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((5, 16)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w1"], ["h"], transB=1),
             helper.make_node("Tanh", ["h"], ["t"]), helper.make_node("Gemm", ["t", "w2"], ["y"], transB=1)]
    return _model(nodes, inits, [3, 4, 4])


def _model(nodes, inits, shape) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_one_flat_map_marks_its_image_and_the_batch_goes_on():
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    x[1] = 0
    ex = onnxcam.Explainer(conv_net(), device="cpu")
    for method in ("gradcam", "layercam", "rsi-gradcam"):
        r = ex.explain(x, method=method, target=2, **({"steps": 3, "score": "logit"} if method == "rsi-gradcam" else {}))
        assert r.valid.tolist() == [True, False, True]
        assert (r.heatmap[1] == 0).all() and all(r.heatmap[i].max() == pytest.approx(1, abs=1e-6) for i in (0, 2))
        alone = ex.explain(x[2:], method=method, target=2,
                           **({"steps": 3, "score": "logit"} if method == "rsi-gradcam" else {}))
        np.testing.assert_allclose(r.heatmap[2], alone.heatmap[0], atol=1e-6)
        with pytest.raises(onnxcam.OnnxcamError, match="map of image 0 is constant"):
            ex.explain(x[1:2], method=method, target=2)


def test_input_methods_need_no_layer():
    ex = onnxcam.Explainer(mlp(), layer=None, device="cpu")  # None = "auto": no layer found, and none asked for yet
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 4)).astype(np.float32)
    for method, options in (("saliency", {}), ("ig", {"steps": 8}), ("smoothgrad", {"samples": 3})):
        r = ex.explain(x, method=method, target=1, **options)
        assert r.attribution.shape == x.shape and r.valid.all()
    with pytest.raises(onnxcam.LayerError):
        ex.explain(x, method="gradcam")


@pytest.mark.parametrize("method, options, words", [
    ("smoothgrad", {"seed": -1}, "seed must be an integer"),
    ("rsi-gradcam", {"steps": 100_001}, "steps must be an integer in 1..100000"),
    ("ig", {"steps": True}, "steps must be an integer"),
    ("ig", {"quadrature": "simpson"}, "quadrature must be one of"),
    ("smooth-gradcam++", {"sigma": float("nan")}, "sigma must be a finite number >= 0"),
    ("rsi-gradcam", {"grad_relu": "yes"}, "grad_relu must be True or False"),
    ("ig", {"baseline": "white"}, "baseline must be a number"),
    ("gradcam", {"steps": 3}, "has no option 'steps'"),
    ("gradcm", {}, "did you mean gradcam"),
])
def test_bad_options_are_the_same_usage_error_everywhere(method, options, words):
    """Explainer.explain, export and the options schema raise one UsageError (exit code 2) with one message."""
    ex = onnxcam.Explainer(conv_net(), device="cpu")
    x = np.ones((1, 3, 8, 8), np.float32)
    for call in (lambda: ex.explain(x, method=method, **options), lambda: methods.options(method, options),
                 *([lambda: onnxcam.export(conv_net(), method, **options)] if method != "gradcm" else [])):
        with pytest.raises(onnxcam.UsageError, match=words) as info:
            call()
        assert info.value.exit_code == 2


def test_help_lists_every_methods_command_line_options():
    text = " ".join(CliRunner().invoke(main, ["explain", "--help"], terminal_width=200).output.split())
    for name, definition in methods.METHODS.items():
        for f in dataclasses.fields(definition.options):
            spec = f.metadata["spec"]
            if spec.cli:
                assert f"--{spec.flag or f.name.replace('_', '-')}" in text, (name, f.name)


def test_cli_option_no_chosen_method_takes_is_exit_2(tmp_path):
    onnx.save(conv_net(), tmp_path / "m.onnx")
    result = CliRunner().invoke(main, ["explain", str(tmp_path / "m.onnx"), str(tmp_path / "none.png"), "-m", "gradcam",
                                       "--samples", "3"])
    assert result.exit_code == 2 and "--samples does not apply to gradcam" in result.output
