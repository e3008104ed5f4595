"""OpInfo-style gradient check: one ONNX node, its onnxcam gradient in ONNX Runtime, against central finite
differences of the same node evaluated in float64 by onnx's reference evaluator (an independent backend)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import onnxcam


@dataclass
class Case:
    """One row of the table: `inputs` are arrays; float arrays not listed in `const` are differentiated."""

    op: str
    inputs: list
    attrs: dict = field(default_factory=dict)
    id: str = ""
    const: tuple[int, ...] = ()  # input positions baked in as initializers (weights, shapes, indices)
    outputs: int = 1
    opset: int = 18
    rtol: float = 1e-4

    def __str__(self) -> str:
        return self.id or self.op


def rand(*shape, seed: int = 0, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed + 17 * len(shape)).uniform(low, high, shape)


def _model(case: Case, dtype) -> tuple[onnx.ModelProto, list[str]]:
    """The node, with every output flattened and concatenated into one score tensor `y`."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs, inits, names, wrt = [], [], [], []
    for i, value in enumerate(case.inputs):
        if value is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        value = np.asarray(value)
        if value.dtype.kind == "f":
            value = value.astype(dtype)
        if value.dtype.kind == "f" and i not in case.const:
            inputs.append(helper.make_tensor_value_info(name, elem, value.shape))
            wrt.append(name)
        else:
            inits.append(numpy_helper.from_array(value, name))
    outs = [f"out{k}" for k in range(case.outputs)]
    nodes = [helper.make_node(case.op, names, outs, **case.attrs)]
    flat = []
    for o in outs:
        nodes.append(helper.make_node("Reshape", [o, "minus_one"], [o + "_flat"]))
        flat.append(o + "_flat")
    nodes.append(helper.make_node("Concat", flat, ["y"], axis=0))
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "minus_one"))
    y = helper.make_tensor_value_info("y", elem, [None])
    graph = helper.make_graph(nodes, "case", inputs, [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    return model, wrt


def _session(model: onnx.ModelProto) -> ort.InferenceSession | None:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # ORT lacks a float64 kernel for this op: fall back to float32
        return None


def check(case: Case) -> None:
    """Assert that onnxcam's VJP for a random seed equals finite differences of sum(seed · y)."""
    ref_model, wrt = _model(case, np.float64)
    ref = ReferenceEvaluator(ref_model)
    feeds = {n: np.asarray(case.inputs[int(n[2:])], np.float64) for n in wrt}
    y0 = ref.run(None, feeds)[0]
    seed = np.random.default_rng(1).uniform(-1, 1, y0.shape)

    for dtype, rtol in ((np.float64, 1e-5), (np.float32, case.rtol)):
        model, _ = _model(case, dtype)
        session = _session(onnxcam.gradient_model(model, wrt=wrt, output="y"))
        if session is not None:
            break
    assert session is not None, f"{case}: the gradient model does not load in ONNX Runtime"
    out = session.run(
        [onnxcam.grad_name(n) for n in wrt],
        {**{n: v.astype(dtype) for n, v in feeds.items()}, "grad_seed": seed.astype(dtype)},
    )

    eps = 1e-6
    for name, got in zip(wrt, out):
        expected = np.zeros_like(feeds[name])
        for idx in np.ndindex(*feeds[name].shape):
            hi, lo = dict(feeds), dict(feeds)
            hi[name], lo[name] = feeds[name].copy(), feeds[name].copy()
            hi[name][idx] += eps
            lo[name][idx] -= eps
            expected[idx] = ((ref.run(None, hi)[0] - ref.run(None, lo)[0]) * seed).sum() / (2 * eps)
        scale = max(np.abs(expected).max(), 1e-3)
        err = np.abs(got - expected).max() / scale
        assert got.shape == expected.shape, f"{case} d{name}: shape {got.shape} != {expected.shape}"
        assert err <= rtol, f"{case} d{name} ({np.dtype(dtype).name}): max rel err {err:.2e} > {rtol:.0e}"
