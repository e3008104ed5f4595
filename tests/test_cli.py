"""The CLI on the shipped model, and one-line errors (never a traceback) for every kind of bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from fuzz import small_cnn
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "efficientnet_lite0.onnx"
CAT = ROOT / "models" / "samples" / "cat.jpg"


def onnxcam(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onnxcam", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(result, *words):
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.save(model, path)
    return path


def tiny_model(input_type=TensorProto.FLOAT) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])]
    x = helper.make_tensor_value_info("x", input_type, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    return helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])


def test_version():
    result = onnxcam("--version")
    assert result.returncode == 0 and "onnxcam" in result.stdout


def test_info_lists_working_providers_quietly():
    result = onnxcam("info", DEMO)
    assert result.returncode == 0, result.stderr
    assert "CPUExecutionProvider" in result.stdout and "opset: 17" in result.stdout
    assert "EP Error" not in result.stdout + result.stderr


def test_layers_of_demo_model_auto_is_last_map_before_global_pooling():
    result = onnxcam("layers", DEMO, "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    model = onnx.load(DEMO)
    pool = next(n for n in model.graph.node if n.op_type == "GlobalAveragePool")
    assert listing["auto"] == pool.input[0]
    assert listing["layers"][-1]["shape"][1:] == [1280, 7, 7]
    assert onnxcam("layers", DEMO).stdout.count("<- auto") == 1


def test_explain_writes_overlays_maps_montage_and_top5(tmp_path):
    result = onnxcam("explain", DEMO, CAT, "-m", "gradcam", "-m", "xgradcam", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["cat_gradcam.npy", "cat_gradcam.png", "cat_montage.png", "cat_xgradcam.npy", "cat_xgradcam.png",
                     "results.jsonl"]
    record = json.loads((tmp_path / "out" / "results.jsonl").read_text())
    assert record["top5"][0]["name"] in ("tiger cat", "Egyptian cat", "tabby")
    assert np.load(tmp_path / "out" / "cat_gradcam.npy").shape == (1, 7, 7)


def test_missing_file():
    assert_one_line_error(onnxcam("layers", "/nonexistent/model.onnx"), "not found")


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "m.onnx").write_text("this is not a model\n")
    assert_one_line_error(onnxcam("layers", tmp_path / "m.onnx"), "not an ONNX model")


def test_truncated_onnx_file(tmp_path):
    (tmp_path / "m.onnx").write_bytes(DEMO.read_bytes()[: 100_000])
    assert_one_line_error(onnxcam("info", tmp_path / "m.onnx"))


def test_model_without_float_image_input(tmp_path):
    path = save(tiny_model(TensorProto.INT64), tmp_path / "int.onnx")
    assert_one_line_error(onnxcam("layers", path))


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.zeros(108, np.float32).tobytes())
    model = tiny_model()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../secret.bin")
    (tmp_path / "sub").mkdir()
    path = save(model, tmp_path / "sub" / "ext.onnx")
    assert_one_line_error(onnxcam("layers", path), "outside the model's folder")


def test_unknown_layer_suggests_close_names(tmp_path):
    result = onnxcam("explain", DEMO, CAT, "--layer", "/_swish_1/Clip_output", "--out", tmp_path)
    assert_one_line_error(result, "did you mean", "/_swish_1/Clip_output_0")
    assert not any(tmp_path.iterdir())


def test_unreadable_image_and_wrong_method(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\x00" * 10)
    assert_one_line_error(onnxcam("explain", DEMO, tmp_path / "bad.jpg", "--out", tmp_path / "o"), "cannot read image")
    assert_one_line_error(onnxcam("explain", DEMO, CAT, "-m", "gradkam", "--out", tmp_path / "o"), "did you mean")


def test_tiny_model_loads_in_python():
    import onnxcam as oc

    m = oc.load_model(tiny_model())
    assert (m.image_input, m.layout, m.score_output) == ("x", "NCHW", "y")
    with pytest.raises(oc.LayerError, match="did you mean"):
        oc.Explainer(tiny_model(), layer="rr")


def test_a_model_that_fails_inside_onnx_runtime_prints_one_line(tmp_path):
    """Reshape to 7 columns of a 16-wide tensor: it loads, then fails in ORT, which logs nothing of its own."""
    m = small_cnn()
    m.graph.initializer.extend([numpy_helper.from_array(np.array([-1, 7], np.int64), "bad_shape"),
                                numpy_helper.from_array(np.array([-1, 16], np.int64), "back_shape")])
    fc = next(n for n in m.graph.node if n.op_type == "Gemm")
    fc.input[0] = "flat_back"
    at = list(m.graph.node).index(fc)
    m.graph.node.insert(at, helper.make_node("Reshape", ["flat_odd", "back_shape"], ["flat_back"]))
    m.graph.node.insert(at, helper.make_node("Reshape", ["flat", "bad_shape"], ["flat_odd"]))
    onnx.save(m, tmp_path / "bad.onnx")
    r = onnxcam("explain", tmp_path / "bad.onnx", CAT, "-m", "gradcam", "--out", tmp_path / "o")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: ONNX Runtime failed running the model"), r.stderr
    assert ".cc:" not in r.stderr and "[ONNXRuntimeError]" not in r.stderr
