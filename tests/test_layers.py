"""Layer discovery and the "auto" choice on real torchvision exports from both exporters."""

import numpy as np
import onnx
import pytest

import onnxcam
from onnxcam.layers import auto_layer, candidate_layers


def _consumers(proto: onnx.ModelProto, tensor: str) -> set[str]:
    return {n.op_type for n in proto.graph.node if tensor in n.input}


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_large"])
def test_auto_is_the_last_feature_map_before_global_pooling(zoo_export, name, exporter):
    model = onnxcam.load_model(zoo_export(name, exporter))
    layer = auto_layer(model)
    assert layer.layout == "NCHW" and layer.shape[2:] == (7, 7)
    assert _consumers(model.proto, layer.name) & {"GlobalAveragePool", "ReduceMean"}
    layers = candidate_layers(model)
    assert layers[-1].name == layer.name or layers.index(layer) > len(layers) - 4
    assert all(x.shape[2] > 1 and x.shape[3] > 1 for x in layers if x.layout == "NCHW")


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_vit_auto_is_the_last_blocks_first_norm_and_explains(zoo_export, exporter):
    ex = onnxcam.Explainer(zoo_export("vit_b_16", exporter))
    assert ex.layer.op == "LayerNormalization" and ex.layer.layout == "NTD"
    assert ex.layer.shape[1:] == (197, 768) and ex.layer.grid == (14, 14) and ex.layer.class_tokens == 1
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    res = ex.explain(x, method="gradcam")
    assert res.cam.shape == (2, 14, 14) and np.ptp(res.heatmap) > 0.5
