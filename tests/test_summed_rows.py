"""Path rows summed inside the graph (A and G stay in ONNX Runtime: on a GPU, on the device) give the engine's numpy
sums, with chunks that split an image's path and hold the end of one and the start of the next."""

from pathlib import Path

import numpy as np
import pytest

import onnxcam

DEMO = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0.onnx"
CASES = [("ig", {"steps": 7}), ("rsi-gradcam", {"steps": 6}), ("rsi-gradcam", {"steps": 6, "rule": "left"}),
         ("integrated-gradcam", {"steps": 5})]


@pytest.fixture(scope="module")
def explainers():
    return onnxcam.Explainer(str(DEMO), device="cpu"), onnxcam.Explainer(str(DEMO), device="cpu")


@pytest.mark.parametrize(("method", "options"), CASES, ids=[f"{m}-{'-'.join(map(str, o.values()))}" for m, o in CASES])
def test_rows_summed_in_the_graph_equal_numpy_sums(explainers, method, options):
    numpy_sums, graph_sums = explainers
    numpy_sums.sum_in_graph = False
    x = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    kw = dict(method=method, target=[1, 7, 409], batch_size=5, **options)
    want, got = numpy_sums.explain(x, **kw), graph_sums.explain(x, **kw)
    assert any(k[0] == "graph" and k[1] == "sums" and k[2] == method for k in graph_sums._sessions)
    assert not any(k[0] == "graph" and k[1] == "sums" for k in numpy_sums._sessions)
    for field in ("attribution", "cam", "completeness_gap"):
        a, b = getattr(want, field), getattr(got, field)
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * np.abs(a).max(), err_msg=field)
    np.testing.assert_allclose(got.heatmap, want.heatmap, atol=1e-4)
