"""Triton entries from models with hostile tensor names: the config parses as Triton's own ModelConfig."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fuzz import small_cnn
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import onnxcam
from onnxcam.triton import triton_entry

HOSTILE = {"input": 'in"put} {\nname: "x', "probs": 'probs"}\noutput [ { name: "evil'}


def renamed(proto: onnx.ModelProto, names: dict[str, str]) -> onnx.ModelProto:
    for node in proto.graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for vi in [*proto.graph.input, *proto.graph.output]:
        vi.name = names.get(vi.name, vi.name)
    return proto


def test_hostile_names_give_a_config_with_exactly_the_models_io(tmp_path):
    proto = onnxcam.export(renamed(small_cnn(), HOSTILE), "gradcam")
    entry = triton_entry(proto, tmp_path / "repo", "small", max_batch_size=4)
    config = text_format.Parse((entry / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    served = ort.InferenceSession(str(entry / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in config.input] == [i.name for i in served.get_inputs()] == [HOSTILE["input"], "target"]
    assert [o.name for o in config.output] == [o.name for o in served.get_outputs()] == [HOSTILE["probs"], "heatmap", "cam"]
    assert (config.name, config.max_batch_size, config.platform) == ("small", 4, "onnxruntime_onnx")
    assert list(config.input[0].dims) == [3, 32, 32] and config.input[1].reshape.shape == []
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    heatmap = served.run(["heatmap"], {HOSTILE["input"]: x, "target": np.array([-1, 3], np.int64)})[0]
    assert heatmap.shape == (2, 32, 32) and np.isfinite(heatmap).all()
    assert not list(entry.rglob("*.part"))


@pytest.mark.parametrize("name", ["a\nb", "", "x" * 300, "../up", ".hidden", "a/b", "a b", "é"])
def test_model_names_that_are_not_safe_folders_and_urls_are_refused(tmp_path, name):
    with pytest.raises(onnxcam.OnnxcamError, match="invalid Triton model name"):
        triton_entry(onnxcam.export(small_cnn(), "gradcam"), tmp_path / "repo", name)
    assert not (tmp_path / "repo").exists()


def test_tensor_names_triton_cannot_carry_are_refused(tmp_path):
    proto = onnxcam.export(small_cnn(), "gradcam")
    proto.graph.output[0].name = "x" * 1025  # only the config is written from it; the ONNX file is not run here
    with pytest.raises(onnxcam.OnnxcamError, match="tensor name"):
        triton_entry(proto, tmp_path / "repo", "ok")
    assert not (tmp_path / "repo" / "ok").exists()
