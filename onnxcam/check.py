"""`onnxcam check`: what onnxcam can do with a model, and whether its gradients are right for this model.

The gradients onnxcam builds are compared with float64 central finite differences of the model itself, along a few
random directions: ONNX Runtime runs a float64 copy where it has the kernels, onnx's reference evaluator otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .autodiff import grad_name
from .autodiff.builder import unsupported_ops
from .errors import OnnxcamError
from .explainer import Explainer
from .layers import candidate_layers
from .model import FLOAT_TYPES
from .runtime import make_session

# max |⟨g, v⟩ − finite difference| / max |finite difference| over the directions, by the model's precision: float32
# gradients sit ~1e-5 from float64 ones; fp16/bf16 round every activation to 2^-11 / 2^-8 relative, layer after layer
TOLERANCE = {TensorProto.FLOAT: 1e-3, TensorProto.DOUBLE: 1e-3, TensorProto.FLOAT16: 3e-2, TensorProto.BFLOAT16: 1e-1}
QUICK = {"gradcam": {}, "gradcam++": {}, "xgradcam": {}, "layercam": {}, "hirescam": {}, "rsi-gradcam": {"steps": 4},
         "integrated-gradcam": {"steps": 4}, "smooth-gradcam++": {"samples": 2}, "ig": {"steps": 4}, "saliency": {},
         "smoothgrad": {"samples": 2}}
PERTURB = "onnxcam_check_perturbation"


@dataclass
class GradientCheck:
    """∂logit/∂`wrt` · v against (f(x + hv) − f(x − hv)) / 2h in float64, for each direction v."""

    wrt: str
    analytic: np.ndarray
    numeric: np.ndarray
    oracle: str  # "onnxruntime float64" or "onnx reference float64"
    tolerance: float
    floor: float  # below this, a directional derivative is float32 noise (a layer the score barely reads)

    @property
    def error(self) -> float:
        scale = max(float(np.abs(self.numeric).max()), self.floor)
        return float(np.abs(self.analytic - self.numeric).max() / scale)

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance


@dataclass
class CheckReport:
    model: str
    image_input: str
    input_shape: tuple
    layout: str
    score: str
    layers: list[str]
    auto_layer: str | None
    unsupported: list[tuple[str, str]]  # (op type, node) on the gradient path without a rule
    methods: dict[str, str | None] = field(default_factory=dict)  # None = works, else the error line
    gradients: list[GradientCheck] = field(default_factory=list)
    skipped: str | None = None  # why the gradients were not checked

    @property
    def ok(self) -> bool:
        return not self.unsupported and all(g.passed for g in self.gradients)


def check(model, input_size: tuple[int, int] | None = None, directions: int = 3, seed: int = 0,
          methods: bool = True) -> CheckReport:
    """Load `model`, list what onnxcam sees, try each method once and check the gradients on a random input."""
    ex = Explainer(model, layer="auto", device="cpu", input_size=input_size)
    m = ex.model
    layers = [x.name for x in candidate_layers(m)]
    auto = ex.layer.name
    report = CheckReport(m.source, m.image_input, m.input_shape, m.layout, m.logits, layers, auto,
                         unsupported_ops(m.proto, [m.image_input], m.logits))
    rng = np.random.default_rng(seed)
    shape = [1, *(d if isinstance(d, int) else 1 for d in m.input_shape[1:])]
    x = rng.standard_normal(shape).astype(np.float32)
    if methods:
        for name, options in QUICK.items():
            try:
                ex.explain(x, method=name, **options)
                report.methods[name] = None
            except OnnxcamError as e:
                report.methods[name] = str(e)
    if report.unsupported:
        report.skipped = "ops without gradient rules"
    elif any(n.op_type == "QuantizeLinear" for n in m.proto.graph.node):
        report.skipped = "quantized model: piecewise constant, onnxcam uses the straight-through estimator"
    else:
        try:
            report.gradients = _gradient_checks(ex, x, auto, directions, rng)
        except _OracleError as e:
            report.skipped = str(e)
    return report


def _gradient_checks(ex: Explainer, x: np.ndarray, layer: str, directions: int, rng) -> list[GradientCheck]:
    m = ex.model
    wrt = (m.image_input, layer)
    graph = ex.session(wrt, "logit", expose=(layer,))
    (p,) = graph.stream(lambda rows: x[rows], 1, np.array([-1]), 1, [layer, *map(grad_name, wrt)])
    target = int(p.logits[0].argmax())
    y = abs(float(p.logits[0, target]))
    act = p.outputs[layer]
    oracle, run = _float64_runner(m.proto, m.image_input, layer, m.logits, act.shape)
    elem = next(i for i in m.proto.graph.input if i.name == m.image_input).type.tensor_type.elem_type
    checks = []
    for name, base in ((m.image_input, x), (layer, act)):
        rms = max(float(np.sqrt(np.mean(base.astype(np.float64) ** 2))), 1e-3)
        h = 1e-7 * rms  # float64 round-off stays ~1e-9 relative, and few ReLU kinks lie within ±h
        dirs = [rng.standard_normal(base.shape) for _ in range(directions)]
        rows = [(x + s * h * v, np.zeros_like(act)) if name == m.image_input else (x, s * h * v)
                for v in dirs for s in (1, -1)]
        try:
            scores = run(np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows]))[:, target]
        except Exception as e:  # the oracle itself cannot run the model (an op the reference evaluator gets wrong)
            raise _OracleError(f"the float64 oracle ({oracle}) cannot run this model: {_first_line(e)}") from None
        g = p.outputs[grad_name(name)].astype(np.float64)
        checks.append(GradientCheck(name, np.array([float((g * v).sum()) for v in dirs]),
                                    (scores[0::2] - scores[1::2]) / (2 * h), oracle, TOLERANCE[elem], max(1e-6 * y / rms, 1e-30)))
    return checks


class _OracleError(Exception):
    pass


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _float64_runner(proto: onnx.ModelProto, image: str, layer: str, logits: str, layer_shape):
    """A float64 copy of the model whose `layer` gets a perturbation input added; ORT where it runs, else onnx's
    reference evaluator. Returns (oracle name, run(x, perturbation) -> logits)."""
    p = _as_float64(proto)
    g = p.graph
    for node in g.node:
        node.input[:] = [f"{layer}_perturbed" if i == layer else i for i in node.input]
    after = next(k for k, n in enumerate(g.node) if layer in n.output) + 1
    g.node.insert(after, helper.make_node("Add", [layer, PERTURB], [f"{layer}_perturbed"]))
    g.input.append(helper.make_tensor_value_info(PERTURB, TensorProto.DOUBLE, ["N", *layer_shape[1:]]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(logits, TensorProto.DOUBLE, None))
    batch = _dims(proto, image)[0]  # 0 when dynamic: all rows in one run
    try:
        session = make_session(p, "cpu")
        session.run(None, {image: np.zeros([batch or 1, *_dims(proto, image)[1:]]),
                           PERTURB: np.zeros([batch or 1, *layer_shape[1:]])})
        return "onnxruntime float64", _chunked(lambda x, d: session.run(None, {image: x, PERTURB: d})[0], batch)
    except Exception:  # ORT lacks a float64 kernel (Conv, GlobalAveragePool...)
        pass
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(p, new_ops=_float64_ops())
    return "onnx reference float64", _chunked(lambda x, d: evaluator.run(None, {image: x, PERTURB: d})[0], batch)


def _chunked(run, batch: int):
    """run(x, d) over rows in float64, in runs of the model's static batch (the last one padded) when it has one."""
    def chunks(x: np.ndarray, d: np.ndarray) -> np.ndarray:
        x, d = x.astype(np.float64), d.astype(np.float64)
        if not batch:
            return run(x, d)
        out = []
        for k in range(0, len(x), batch):
            pad = batch - len(x[k:k + batch])
            out.append(run(*(np.concatenate([a[k:k + batch], np.repeat(a[-1:], pad, 0)]) for a in (x, d)))[:batch - pad])
        return np.concatenate(out)

    return chunks


def _as_float64(proto: onnx.ModelProto) -> onnx.ModelProto:
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    g = p.graph
    for t in list(g.initializer) + [a.t for n in g.node for a in n.attribute if a.HasField("t")]:
        if t.data_type in FLOAT_TYPES:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for node in g.node:
        for a in node.attribute:
            if a.name in ("to", "dtype") and a.i in FLOAT_TYPES:
                a.i = TensorProto.DOUBLE
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.tensor_type.elem_type in FLOAT_TYPES:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    return p


def _dims(proto: onnx.ModelProto, name: str) -> list[int]:
    """Dims of an input, 0 for a symbolic one (the batch), 1 for other unknown ones."""
    dims = next(i for i in proto.graph.input if i.name == name).type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else 0 if k == 0 else 1 for k, d in enumerate(dims)]





def _float64_ops() -> list:
    """Reference ops that lose float64: onnx's Erf evaluates in float32, and Gelu's function body mixes float32
    constants into float64 arithmetic."""
    from math import erf

    from onnx.reference.op_run import OpRun

    class Erf(OpRun):
        def _run(self, x):
            return (np.vectorize(erf, otypes=[x.dtype])(x),)

    class Gelu(OpRun):
        def _run(self, x, approximate="none"):
            if approximate == "tanh":
                return (0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),)
            return (0.5 * x * (1 + np.vectorize(erf, otypes=[x.dtype])(x / np.sqrt(2))),)

    return [Erf, Gelu]
