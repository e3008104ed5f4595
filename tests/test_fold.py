"""Conv(Pad(x)): the gradient's crop back to x folds into the convolution's pads, and stays exact."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from opcheck import check_model, rand

import onnxcam

# (id, x shape, Pad's pads, Conv attributes, weight shape, float32 inside, the crop folds)
CASES = [
    ("same-stride2", [1, 2, 8, 8], [0, 0, 1, 1], dict(strides=[2, 2]), [3, 2, 3, 3], False, True),
    ("same-stride2-blocked", [1, 4, 8, 8], [0, 0, 1, 1], dict(strides=[2, 2], group=4), [4, 1, 3, 3], True, True),
    ("depthwise-stride1", [1, 3, 6, 5], [1, 1, 1, 1], dict(group=3), [3, 1, 3, 3], False, True),
    ("depthwise-stride1-blocked", [1, 3, 6, 5], [1, 2, 1, 2], dict(group=3), [3, 1, 5, 5], True, True),
    ("asymmetric-5x5-stride2", [2, 2, 7, 6], [1, 2, 2, 1], dict(strides=[2, 2]), [2, 2, 5, 5], False, True),
    ("output-padding", [1, 2, 7, 6], [0, 1, 1, 0], dict(strides=[2, 3], pads=[1, 0, 0, 1]), [3, 2, 3, 3], False, True),
    ("dilated", [1, 2, 7, 7], [2, 1, 1, 1], dict(dilations=[2, 1]), [2, 2, 3, 2], False, True),
    ("1d", [1, 2, 9], [2, 1], dict(strides=[2]), [3, 2, 3], False, True),
    ("pads-beyond-the-kernel", [1, 2, 5, 5], [3, 3, 3, 3], {}, [2, 2, 3, 3], False, False),
]


def _model(shape, pads, attrs, w, inside32, dtype):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    rank = len(shape)
    inner = TensorProto.FLOAT if inside32 else elem
    inits = [numpy_helper.from_array(np.asarray(np.r_[[0, 0], pads[: rank - 2], [0, 0], pads[rank - 2 :]], np.int64),
                                     "pads"),
             numpy_helper.from_array(rand(*w, seed=1).astype(np.float32 if inside32 else dtype), "w")]
    nodes = [helper.make_node("Cast", ["x"], ["xc"], to=inner),
             helper.make_node("Pad", ["xc", "pads"], ["p"]),
             helper.make_node("Conv", ["p", "w"], ["c"], **attrs),
             helper.make_node("Cast", ["c"], ["y"], to=elem)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, ["n", *shape[1:]])],
                              [helper.make_tensor_value_info("y", elem, [None] * rank)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(("shape", "pads", "attrs", "w", "inside32", "folds"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_crop_folds_into_the_convolution(shape, pads, attrs, w, inside32, folds):
    def build(dtype):
        return _model(shape, pads, attrs, w, inside32, dtype)

    grad = onnxcam.gradient_model(build(np.float64), wrt="x", output="y")
    crops = [n.name for n in grad.graph.node if n.op_type == "Slice" and len(n.input) < 5]  # the kernel flip has steps
    assert (not crops) == folds, crops
    # float32 inside: a linear graph, so a large power-of-two step is exact up to float32 rounding
    check_model(build, {"x": rand(*shape)}, "Pad-Conv", rtol=1e-5, eps=0.5 if inside32 else 1e-6)
