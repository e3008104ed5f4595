"""OpInfo-style gradient check: one ONNX node, its onnxcam gradient in ONNX Runtime, against central finite
differences of the same node evaluated in float64 by onnx's reference evaluator (an independent backend)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

import onnxcam


@dataclass
class Case:
    """One row of the table: `inputs` are arrays; float arrays not listed in `const` are differentiated.

    float64 arrays take the dtype under test (float64, else float32 where ONNX Runtime lacks the kernel)."""

    op: str
    inputs: list
    attrs: dict = field(default_factory=dict)
    id: str = ""
    const: tuple[int, ...] = ()  # input positions baked in as initializers (weights, shapes, indices)
    outputs: int = 1
    opset: int = 18
    rtol: float = 1e-4
    eps: float = 1e-6  # finite-difference step; a power of two keeps float32 casts exact
    reference: str = "onnx"  # or "ort": finite differences of ONNX Runtime's forward pass
    symbolic: bool = False  # differentiated inputs declare symbolic sizes after N, C: shape inference loses them

    def __str__(self) -> str:
        return self.id or self.op


def rand(*shape, seed: int = 0, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed + 17 * len(shape)).uniform(low, high, shape)


def _model(case: Case, dtype) -> tuple[onnx.ModelProto, list[str]]:
    """The node, with every output flattened, cast to `dtype` and concatenated into one score tensor `y`."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs, inits, names, wrt = [], [], [], []
    for i, value in enumerate(case.inputs):
        if value is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        value = np.asarray(value)
        if value.dtype == np.float64:  # float32 arrays stay float32 (Resize scales)
            value = value.astype(dtype)
        if value.dtype.kind == "f" and i not in case.const:
            dims = [d if k < 2 or not case.symbolic else f"{name}_{k}" for k, d in enumerate(value.shape)]
            inputs.append(helper.make_tensor_value_info(name, elem, dims))
            wrt.append(name)
        else:
            inits.append(numpy_helper.from_array(value, name))
    outs = [f"out{k}" for k in range(case.outputs)]
    nodes = [helper.make_node(case.op, names, outs, **case.attrs)]
    flat = []
    for o in outs:
        nodes.append(helper.make_node("Reshape", [o, "minus_one"], [o + "_flat"]))
        nodes.append(helper.make_node("Cast", [o + "_flat"], [o + "_cast"], to=elem))
        flat.append(o + "_cast")
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


_erf = np.vectorize(math.erf, otypes=[np.float64])


class Erf(OpRun):
    """onnx's reference Erf and Gelu compute in float32, which ruins float64 finite differences."""

    def _run(self, x):
        return (_erf(x).astype(x.dtype),)


class Gelu(OpRun):
    def _run(self, x, approximate="none"):
        if approximate == "tanh":
            return (0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),)
        return (0.5 * x * (1 + _erf(x / math.sqrt(2))),)


class LRN(OpRun):
    """onnx's reference LRN loops over the batch axis instead of the channels."""

    def _run(self, x, alpha=1e-4, beta=0.75, bias=1.0, size=None):
        before, after = (size - 1) // 2, size // 2
        square = np.pad(x**2, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
        window = sum(square[:, k : k + x.shape[1]] for k in range(size))
        return (x / (bias + alpha / size * window) ** beta,)


def _forward(build, reference: str):
    """y as a function of the feeds, in float64 where the backend allows it.

    `reference="ort"` is for forms that onnx's reference evaluator gets wrong or lacks (grouped ConvTranspose,
    output_shape, negative pads, opset-11 Softmax, tf_half_pixel_for_nn): the gradient must then match ONNX
    Runtime's own forward pass. Without a float64 kernel that runs in float32: only for ops linear in the
    differentiated input, with a large eps."""
    if reference == "onnx":
        ref = ReferenceEvaluator(build(np.float64), new_ops=[Erf, Gelu, LRN])
        return lambda feeds: ref.run(None, feeds)[0]
    for dtype in (np.float64, np.float32):
        session = _session(build(dtype))
        if session is not None:
            return lambda feeds: session.run(None, {k: v.astype(dtype) for k, v in feeds.items()})[0].astype(np.float64)
    raise AssertionError("the forward model does not load in ONNX Runtime")


def _gradient_session(build, wrt: list[str], label: str):
    """The gradient model in float64, else in float32 where ONNX Runtime lacks a float64 kernel."""
    for dtype in (np.float64, np.float32):
        try:
            session = _session(onnxcam.gradient_model(build(dtype), wrt=wrt, output="y"))
        except onnxcam.ModelError:  # an op whose schema has no float64 (Celu)
            continue
        if session is not None:
            return session, dtype
    raise AssertionError(f"{label}: the gradient model does not load in ONNX Runtime")


def check(case: Case) -> None:
    """Assert that onnxcam's VJP for a random seed equals finite differences of sum(seed · y)."""
    wrt = _model(case, np.float64)[1]
    feeds = {n: np.asarray(case.inputs[int(n[2:])], np.float64) for n in wrt}
    check_model(lambda dtype: _model(case, dtype)[0], feeds, str(case), case.rtol, case.eps, case.reference)


def check_model(build, feeds: dict[str, np.ndarray], label: str, rtol=1e-4, eps=1e-6, reference="onnx") -> None:
    """The comparison for any graph with output `y`: build(dtype) makes it with float inputs of that dtype."""
    forward = _forward(build, reference)
    wrt = list(feeds)
    seed = np.random.default_rng(1).uniform(-1, 1, forward(feeds).shape)

    session, dtype = _gradient_session(build, wrt, label)
    tol = 1e-5 if dtype is np.float64 else rtol
    out = session.run(
        [onnxcam.grad_name(n) for n in wrt],
        {**{n: v.astype(dtype) for n, v in feeds.items()}, "grad_seed": seed.astype(dtype)},
    )

    for name, got in zip(wrt, out):
        expected = np.zeros_like(feeds[name])
        for idx in np.ndindex(*feeds[name].shape):
            hi, lo = dict(feeds), dict(feeds)
            hi[name], lo[name] = feeds[name].copy(), feeds[name].copy()
            hi[name][idx] += eps
            lo[name][idx] -= eps
            expected[idx] = ((forward(hi) - forward(lo)) * seed).sum() / (2 * eps)
        scale = max(np.abs(expected).max(), 1e-3)
        err = np.abs(got - expected).max() / scale
        assert got.shape == expected.shape, f"{label} d{name}: shape {got.shape} != {expected.shape}"
        assert err <= tol, f"{label} d{name} ({np.dtype(dtype).name}): max rel err {err:.2e} > {tol:.0e}"
