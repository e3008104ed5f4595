"""Hostile or broken model files: one-line ModelErrors from onnxcam's checks and onnx.checker, before ONNX Runtime."""

import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxcam import ModelError, load_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from fuzz import small_cnn  # noqa: E402


def node(m, name):
    return next(n for n in m.graph.node if n.name == name)


def init(m, name):
    return next(t for t in m.graph.initializer if t.name == name)


def cycle(m):
    node(m, "conv2").input[0] = "features"  # conv2 -> relu2 -> conv3 -> add3 -> relu3 -> conv2


def dangling_input(m):
    node(m, "relu2").input[0] = "ghost"


def dangling_output(m):
    m.graph.output[0].name = "ghost"


def produced_twice(m):
    node(m, "relu2").output[0] = "r1"


def raw_data_too_long(m):
    init(m, "fc.b").raw_data += b"\0" * 4


def raw_data_too_short(m):
    t = init(m, "c1.w")
    t.dims[0] = 2**20  # 2^20 x 3 x 3 x 3 floats (113 MB) declared, 864 bytes held


def typed_data_count(m):
    t = init(m, "fc.b")
    t.ClearField("raw_data")
    t.float_data.extend([0.0] * 11)


def huge_input(m):
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 2**40


def negative_value_info(m):
    m.graph.value_info.add().CopyFrom(helper.make_tensor_value_info("r1", TensorProto.FLOAT, ["N", 8, -32, 32]))


def _before_flatten(m, nodes):
    """Splice nodes between the global pool and Flatten: gap (N,16,1,1) -> ... -> gap2 (N,16,1,1)."""
    k = [n.name for n in m.graph.node].index("flatten")
    for j, n in enumerate(nodes):
        m.graph.node.insert(k + j, n)
    node(m, "flatten").input[0] = "gap2"
    del m.graph.value_info[:]


def huge_expand(m):
    """Expand to 16 x 2^16 x 2^16 and pool it back: only shape inference knows the size."""
    m.graph.initializer.append(numpy_helper.from_array(np.array([1, 16, 2**16, 2**16], np.int64), "big_shape"))
    _before_flatten(m, [helper.make_node("Expand", ["gap", "big_shape"], ["gap_big"], name="expand"),
                        helper.make_node("GlobalAveragePool", ["gap_big"], ["gap2"], name="gap2")])


def huge_constant(m):
    """ConstantOfShape 16 x 2^16 x 2^16 added in: constant folding must not try to allocate it."""
    m.graph.initializer.append(numpy_helper.from_array(np.array([1, 16, 2**16, 2**16], np.int64), "big_shape"))
    _before_flatten(m, [helper.make_node("ConstantOfShape", ["big_shape"], ["big"], name="big"),
                        helper.make_node("Add", ["gap", "big"], ["gap_big"], name="add_big"),
                        helper.make_node("GlobalAveragePool", ["gap_big"], ["gap2"], name="gap2")])


def external_negative_length(m):
    t = init(m, "fc.b")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="w.bin")
    t.external_data.add(key="length", value="-1")


def external_wrong_length(m):
    t = init(m, "fc.b")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="w.bin")  # 4 KB of data for 10 floats


def bad_attribute(m):
    node(m, "add3").attribute.append(helper.make_attribute("kernel_shape", [3, 3]))  # onnx.checker's to find


CASES = [
    (cycle, ["cycle", "'conv2' (Conv)", "'relu3' (Relu)"]), (dangling_input, ["'relu2' (Relu) reads 'ghost'", "dangling"]),
    (dangling_output, ["graph output 'ghost'", "dangling"]), (produced_twice, ["'r1' is produced twice"]),
    (raw_data_too_long, ["'fc.b' declares dims [10] (40 bytes) but holds 44"]),
    (raw_data_too_short, ["'c1.w' declares dims [1048576, 3, 3, 3]", "but holds 864"]),
    (typed_data_count, ["'fc.b' declares dims [10] (10 values in float_data) but holds 11"]),
    (huge_input, ["'input' has absurd shape", "1099511627776"]), (negative_value_info, ["'r1' has a negative dim"]),
    (huge_expand, ["'gap_big' has absurd shape"]), (huge_constant, ["has absurd shape", "65536"]),
    (external_negative_length, ["bad external data entry for tensor 'fc.b'"]),
    (external_wrong_length, ["'fc.b' declares dims [10] (40 bytes) but its external data", "4096 bytes"]),
    (bad_attribute, ["invalid ONNX model", "kernel_shape", "add3"]),
]


@pytest.mark.parametrize("mutate,words", CASES, ids=[c[0].__name__ for c in CASES])
def test_refused_with_one_line_before_onnx_runtime(tmp_path, monkeypatch, mutate, words):
    m = small_cnn()
    mutate(m)
    (tmp_path / "w.bin").write_bytes(bytes(4096))
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())

    def no_session(*args, **kwargs):
        raise AssertionError("ONNX Runtime saw a model that onnxcam should have refused")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    with pytest.raises(ModelError) as error:
        load_model(path)
    message = str(error.value)
    assert "\n" not in message and len(message) < 600, message
    for word in words:
        assert word in message, message


def test_names_that_are_not_utf8_are_refused(tmp_path):
    data = small_cnn().SerializeToString().replace(b"small_cnn", b"\xd8mall_cnn")
    (tmp_path / "m.onnx").write_bytes(data)
    with pytest.raises(ModelError, match="GraphProto.name .* is not UTF-8"):
        load_model(tmp_path / "m.onnx")


def test_the_small_cnn_itself_loads():
    m = load_model(small_cnn())
    assert (m.image_input, m.score_output, m.logits, m.layout) == ("input", "probs", "logits", "NCHW")


def test_oversized_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as f:
        f.truncate(2**31 + 1)  # sparse: takes no disk space
    with pytest.raises(ModelError, match="larger than 2 GB"):
        load_model(path)


def test_string_attributes_that_are_not_utf8_are_refused(tmp_path):
    # fuzz finding: onnx-graphsurgeon decoded Conv's auto_pad b"\xff\xfe" while folding (UnicodeDecodeError,
    # "internal error"); string attributes are bytes fields, which protobuf itself never checks
    m = small_cnn()
    node(m, "conv2").attribute.append(helper.make_attribute("auto_pad", b"\xff\xfe"))
    (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(ModelError, match=r"AttributeProto.s b'\\xff\\xfe' is not UTF-8"):
        load_model(tmp_path / "m.onnx")
