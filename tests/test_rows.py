"""Path and noise methods run only the rows they need: one forward row per image, then their gradient rows."""

from collections import Counter

import numpy as np
import pytest
from fuzz import small_cnn

import onnxcam
from onnxcam.engine import Graph

X = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
CASES = {  # method: (options, gradient rows per image, forward rows besides one per image)
    "rsi-gradcam": ({"steps": 6, "score": "logit"}, 7, 0),
    "integrated-gradcam": ({"steps": 6}, 6, 0),
    "smooth-gradcam++": ({"samples": 5}, 5, 0),
    "ig": ({"steps": 4, "quadrature": "riemann_right"}, 4, 1),  # F(x') of the baseline all images share
}


@pytest.mark.parametrize("method", CASES)
def test_rows_run_are_the_rows_reported(method, monkeypatch):
    counted = Counter()
    stream = Graph.stream

    def counting(self, make_rows, n_rows, targets, batch_size, outputs):
        counted["gradient" if self.takes_target else "forward"] += n_rows
        return stream(self, make_rows, n_rows, targets, batch_size, outputs)

    monkeypatch.setattr(Graph, "stream", counting)
    options, per_image, shared = CASES[method]
    r = onnxcam.Explainer(small_cnn(), device="cpu").explain(X, method=method, target=[1, 2, 3], **options)
    assert counted == {"gradient": per_image * len(X), "forward": len(X) + shared} == r.extras["rows"]
