"""Tiny but real maps normalize like their full-size twins; truly constant maps are an error in every method."""

import numpy as np
import pytest
from fuzz import small_cnn
from onnx import numpy_helper

import onnxcam

X = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
METHODS = {"gradcam": {}, "layercam": {}, "rsi-gradcam": {"steps": 4}, "ig": {"steps": 4}, "saliency": {}}


def scaled_head(factor: float):
    """The small CNN with its classifier scaled: every logit, and so every gradient, times `factor`."""
    m = small_cnn()
    for t in m.graph.initializer:
        if t.name in ("fc.w", "fc.b"):
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(factor), t.name))
    return m


@pytest.mark.parametrize("method", METHODS)
def test_maps_of_a_tiny_score_equal_those_of_the_full_score(method):
    """These maps are positively homogeneous in the logit: scaling the classifier by 1e-20 leaves every heatmap."""
    options = {**METHODS[method], **({"score": "logit"} if method == "rsi-gradcam" else {})}
    full = onnxcam.Explainer(small_cnn(), device="cpu").explain(X, method=method, target=4, **options)
    tiny = onnxcam.Explainer(scaled_head(1e-20), device="cpu").explain(X, method=method, target=4, **options)
    np.testing.assert_allclose(tiny.heatmap, full.heatmap, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_a_score_that_ignores_the_input_is_an_error_in_every_method(method):
    with pytest.raises(onnxcam.OnnxcamError, match="constant"):
        onnxcam.Explainer(scaled_head(0.0), device="cpu").explain(X, method=method, target=4, **METHODS[method])
