"""What other exporters write loads as what it means: unused opset imports, dim −1, dynamic H/W with a given size,
Caffe-style (N, C, 1, 1) heads; score outputs that are not (N, classes) and custom-op nodes are refused in one line."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fuzz import small_cnn
from onnx import TensorProto, helper

import onnxcam
from onnxcam.cli import main

X = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)


def dynamic_size(m: onnx.ModelProto) -> onnx.ModelProto:
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    return m


def test_unused_ml_import_and_minus_one_dims_load_as_the_plain_model():
    m = small_cnn()
    m.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    m.opset_import.append(helper.make_opsetid("com.example.unused", 1))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = -1
    got = onnxcam.Explainer(m, device="cpu").explain(X, method="gradcam", target=3).heatmap
    want = onnxcam.Explainer(small_cnn(), device="cpu").explain(X, method="gradcam", target=3).heatmap
    np.testing.assert_array_equal(got, want)


def test_a_node_in_a_custom_domain_is_refused_by_name():
    m = small_cnn()
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    relu.domain = "com.example"
    with pytest.raises(onnxcam.ModelError, match="node 'relu1' .* custom-op domain 'com.example'"):
        onnxcam.load_model(m)


def test_dynamic_height_and_width_need_the_input_size(tmp_path):
    with pytest.raises(onnxcam.LayerError, match="input_size=.*--size"):  # asked for when a method needs the layer
        onnxcam.Explainer(dynamic_size(small_cnn()), device="cpu").explain(X, method="gradcam")
    got = onnxcam.Explainer(dynamic_size(small_cnn()), device="cpu", input_size=(32, 32)).explain(X, method="gradcam")
    want = onnxcam.Explainer(small_cnn(), device="cpu").explain(X, method="gradcam")
    np.testing.assert_array_equal(got.heatmap, want.heatmap)
    path = tmp_path / "dyn.onnx"
    onnx.save(dynamic_size(small_cnn()), path)
    assert CliRunner().invoke(main, ["layers", str(path)]).exit_code == 2
    listed = CliRunner().invoke(main, ["layers", str(path), "--size", "32", "--json"])
    assert listed.exit_code == 0 and '"auto": "features"' in listed.output
    with pytest.raises(onnxcam.ModelError, match="does not match the model's fixed"):
        onnxcam.load_model(small_cnn(), input_size=(64, 64))


def caffe_head() -> onnx.ModelProto:
    """The small CNN with its Flatten+Gemm replaced by a 1×1 Conv classifier and a Softmax on (N, 10, 1, 1)."""
    m = small_cnn()
    fc_w = next(t for t in m.graph.initializer if t.name == "fc.w")
    fc_w.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(fc_w)[:, :, None, None], "fc.w"))
    nodes = [n for n in m.graph.node if n.op_type not in ("Flatten", "Gemm", "Softmax")]
    nodes += [helper.make_node("Conv", ["gap", "fc.w", "fc.b"], ["logits4"], name="head"),
              helper.make_node("Softmax", ["logits4"], ["probs"], axis=1, name="softmax")]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10, 1, 1]))
    return m


def test_caffe_style_heads_are_class_scores():
    """Both the logit and the softmax probability of the (N, 10, 1, 1) head equal those of the Gemm head."""
    for score in ("logit", "prob"):
        options = dict(method="rsi-gradcam", steps=4, score=score, target=[1, 7])
        got = onnxcam.Explainer(caffe_head(), device="cpu").explain(X, **options)
        want = onnxcam.Explainer(small_cnn(), device="cpu").explain(X, **options)
        np.testing.assert_allclose(got.cam, want.cam, rtol=1e-5, atol=1e-6 * np.abs(want.cam).max())
        np.testing.assert_allclose(got.logits, want.logits, rtol=1e-5, atol=1e-6)


def test_a_softmax_behind_a_flatten_is_found():
    m = caffe_head()
    m.graph.node.append(helper.make_node("Flatten", ["probs"], ["flat_probs"], name="flat"))
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("flat_probs", TensorProto.FLOAT, ["N", 10]))
    model = onnxcam.load_model(m)
    assert model.output_is_prob and model.logits.startswith("logits4")


def test_a_score_output_that_is_not_n_by_classes_is_refused():
    m = small_cnn()
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 16, 16, 16]))
    with pytest.raises(onnxcam.ModelError, match=r"'features' has shape \['N', 16, 16, 16\], not \(N, classes\)"):
        onnxcam.load_model(m)


def test_a_model_tensor_named_like_the_flattened_scores_is_refused():
    m = caffe_head()
    relu = next(n for n in m.graph.node if n.name == "relu3")
    m.graph.node.insert(list(m.graph.node).index(relu) + 1, helper.make_node("Relu", ["features"], ["logits4_onnxcam_2d"]))
    m.graph.output.append(helper.make_tensor_value_info("logits4_onnxcam_2d", TensorProto.FLOAT, ["N", 16, 16, 16]))
    with pytest.raises(onnxcam.ModelError, match="'logits4_onnxcam_2d'"):
        onnxcam.load_model(m)
