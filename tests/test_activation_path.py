"""RSI-Grad-CAM's activation-space path on the demo model, whose flatten reads Shape(input): the tail after the
layer runs on the layer alone, and the Riemann–Stieltjes sum is complete along that path."""

from pathlib import Path

import numpy as np

import onnxcam

DEMO = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0.onnx"


def test_activation_path_is_complete_where_the_tail_is_linear():
    """The demo's tail after its last map is GlobalAveragePool, Reshape and Gemm: the logit is linear in the layer, so
    Σ R equals y(x) − y(x') up to float32 round-off, for any number of steps."""
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    r = onnxcam.Explainer(DEMO, device="cpu").explain(x, method="rsi-gradcam", steps=3, path="activation",
                                                      grad_relu=False, score="logit", target=[1, 2])
    delta = r.extras["score_delta"]
    assert np.abs(delta).min() > 1e-3
    np.testing.assert_allclose(r.completeness_gap, 0, atol=1e-4 * np.abs(delta).max())
    assert r.extras["rows"] == {"gradient": 2 * 4, "forward": 2 * 2}
