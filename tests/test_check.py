"""`onnxcam check`: passes a real CNN, flags a wrong gradient rule and an op without a rule."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fuzz import small_cnn

import onnxcam
from onnxcam.autodiff.rules import RULES
from onnxcam.cli import main


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "cnn.onnx"
    onnx.save(small_cnn(), path)
    return path


def test_a_real_cnn_passes_with_every_method_working(cnn):
    r = onnxcam.check(cnn)
    assert r.ok and not r.unsupported and r.skipped is None
    assert r.methods and all(error is None for error in r.methods.values()), r.methods
    assert [g.wrt for g in r.gradients] == ["input", r.auto_layer] and all(g.passed for g in r.gradients)
    for g in r.gradients:  # directional derivatives of a real network: neither zero nor all alike
        assert np.abs(g.numeric).min() > 0 and np.ptp(g.numeric) > 0
        assert g.error < 1e-4, g  # float32 ORT vs float64 differences: round-off, far inside the tolerance


def test_cli_prints_the_table_and_exits_0(cnn):
    result = CliRunner().invoke(main, ["check", str(cnn)])
    assert result.exit_code == 0, result.output
    assert "ops without gradient rules: none" in result.output and result.output.count(" pass") == 2


def test_a_wrong_rule_is_flagged(cnn, monkeypatch):
    """Relu's rule patched to pass 1.5 × the gradient where it should pass 1 ×: the input gradient is off."""
    right = RULES["Relu"]

    def wrong(b, node, dy):
        return [b.op("Mul", d, b.const(1.5, like=d)) for d in right(b, node, dy)]

    monkeypatch.setitem(RULES, "Relu", wrong)
    r = onnxcam.check(cnn, methods=False)
    assert not r.ok and not r.gradients[0].passed and r.gradients[0].error > 0.1
    result = CliRunner().invoke(main, ["check", str(cnn)])
    assert result.exit_code == 1 and "FAIL" in result.output


def test_an_op_without_a_rule_is_listed(cnn, monkeypatch):
    monkeypatch.delitem(RULES, "MaxPool")
    r = onnxcam.check(cnn, methods=False)
    assert r.unsupported == [("MaxPool", "pool1")] and r.skipped and not r.ok
    result = CliRunner().invoke(main, ["check", str(cnn)])
    assert result.exit_code == 1 and "MaxPool (pool1)" in result.output


def gelu_cnn() -> onnx.ModelProto:
    """The small CNN with its first ReLU replaced by an exact GELU, x/2 · (1 + erf(x/√2)), as torch exports it."""
    from onnx import helper, numpy_helper

    m = small_cnn()
    relu = next(n for n in m.graph.node if n.name == "relu1")
    at = list(m.graph.node).index(relu)
    m.graph.node.remove(relu)
    m.graph.initializer.extend([numpy_helper.from_array(np.array(2**0.5, np.float32), "sqrt2"),
                                numpy_helper.from_array(np.array(1.0, np.float32), "one"),
                                numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    for k, node in enumerate([helper.make_node("Div", ["bn", "sqrt2"], ["g1"]), helper.make_node("Erf", ["g1"], ["g2"]),
                              helper.make_node("Add", ["g2", "one"], ["g3"]), helper.make_node("Mul", ["bn", "g3"], ["g4"]),
                              helper.make_node("Mul", ["g4", "half"], ["r1"], name="gelu")]):
        m.graph.node.insert(at + k, node)
    return m


def test_a_gelu_network_is_checked_in_float64():
    """onnx's reference Erf rounds to float32, which made central differences with small steps noise."""
    r = onnxcam.check(gelu_cnn(), methods=False)
    assert r.gradients[0].oracle == "onnx reference float64"
    assert all(g.error < 1e-4 for g in r.gradients), [(g.wrt, g.error) for g in r.gradients]

