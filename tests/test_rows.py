"""Path and noise methods run only the rows they need: one forward row per image, then their gradient rows."""

from collections import Counter

import numpy as np
import pytest
from fuzz import small_cnn

import onnxcam
from onnxcam.runner import Session

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
    stream = Session.stream

    def counting(self, make_rows, n_rows, targets, batch_size, outputs, extra=None):
        counted["gradient" if self.takes_target else "forward"] += n_rows
        return stream(self, make_rows, n_rows, targets, batch_size, outputs, extra)

    monkeypatch.setattr(Session, "stream", counting)
    options, per_image, shared = CASES[method]
    r = onnxcam.Explainer(small_cnn(), device="cpu").explain(X, method=method, target=[1, 2, 3], **options)
    assert counted == {"gradient": per_image * len(X), "forward": len(X) + shared} == r.extras["rows"]


def test_every_method_shares_one_forward_session(monkeypatch):
    """Forward rows of every method (path methods' first rows, IG's, evaluate's) go through one session, rebuilt to
    expose more only when a method asks for a tensor it lacks; the maps are those of separate sessions."""
    built = Counter()
    init = Session.__init__

    def counting(self, proto, *args, **kwargs):
        built["forward" if not any(i.name in ("target", "grad_seed") for i in proto.graph.input) else "gradient"] += 1
        init(self, proto, *args, **kwargs)

    ex = onnxcam.Explainer(small_cnn(), device="cpu")
    alone = {m: onnxcam.Explainer(small_cnn(), device="cpu").explain(X, method=m, **CASES[m][0]).heatmap
             for m in ("ig", "rsi-gradcam")}
    monkeypatch.setattr(Session, "__init__", counting)
    first = ex.session((), "logit")
    ig = ex.explain(X, method="ig", **CASES["ig"][0])
    assert built["forward"] == 1 and ex.session((), "logit") is first
    rsi = ex.explain(X, method="rsi-gradcam", **CASES["rsi-gradcam"][0])  # its first rows expose the layer
    assert built["forward"] == 2 and ex.session((), "logit") is ex.session((), "logit", (ex.layer.name,))
    ex.explain(X, method="integrated-gradcam", **CASES["integrated-gradcam"][0])
    assert built["forward"] == 2
    np.testing.assert_array_equal(ig.heatmap, alone["ig"])
    np.testing.assert_array_equal(rsi.heatmap, alone["rsi-gradcam"])


def test_explain_command_batches_images_and_writes_each_images_own_map(tmp_path, monkeypatch):
    """5 images with --batch-size 2: the gradient graph runs 2 + 2 + 1 rows, and each .npy equals its image alone."""
    import cv2
    import onnx
    from click.testing import CliRunner

    from onnxcam.cli import main
    from onnxcam.image import model_preprocessing, read_rgb

    onnx.save(small_cnn(), tmp_path / "cnn.onnx")
    rng = np.random.default_rng(1)
    paths = []
    for k in range(5):
        paths.append(tmp_path / f"img{k}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, (40, 48, 3), np.uint8))
    runs = []
    stream = Session.stream

    def recording(self, make_rows, n_rows, targets, batch_size, outputs):
        runs.append(n_rows)
        return stream(self, make_rows, n_rows, targets, batch_size, outputs)

    monkeypatch.setattr(Session, "stream", recording)
    result = CliRunner().invoke(main, ["explain", str(tmp_path / "cnn.onnx"), *map(str, paths), "-m", "gradcam",
                                       "--batch-size", "2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert runs == [2, 2, 1]
    monkeypatch.setattr(Session, "stream", stream)
    ex = onnxcam.Explainer(tmp_path / "cnn.onnx", device="cpu")
    prep = model_preprocessing(ex.model)  # the command's own preprocessing: this test is about batching
    for path in paths:
        alone = ex.explain(prep(read_rgb(path))[0][None], method="gradcam").cam
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{path.stem}_gradcam.npy"), alone, rtol=1e-5, atol=1e-6)
