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
from .engine import Explainer
from .errors import OnnxcamError
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

    @property
    def error(self) -> float:
        return float(np.abs(self.analytic - self.numeric).max() / max(np.abs(self.numeric).max(), 1e-30))

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
    shape = [d if isinstance(d, int) else 1 for d in m.input_shape]
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
        report.gradients = _gradient_checks(ex, x, auto, directions, rng)
    return report


def _gradient_checks(ex: Explainer, x: np.ndarray, layer: str, directions: int, rng) -> list[GradientCheck]:
    m = ex.model
    wrt = (m.image_input, layer)
    graph = ex.graph(wrt, "logit", expose=(layer,))
    (p,) = graph.stream(lambda rows: x[rows], 1, np.array([-1]), 1, [layer, *map(grad_name, wrt)])
    target = int(p.logits[0].argmax())
    act = p.outputs[layer]
    oracle, run = _float64_runner(m.proto, m.image_input, layer, m.logits, act.shape)
    rows, steps, dirs = [], [], {name: [] for name in wrt}
    for name, base in ((m.image_input, x), (layer, act)):
        for _ in range(directions):
            v = rng.standard_normal(base.shape)
            h = 1e-7 * max(float(np.sqrt(np.mean(base.astype(np.float64) ** 2))), 1e-3)
            dirs[name].append(v)
            for sign in (1, -1):
                dx, da = (sign * h * v, 0 * act) if name == m.image_input else (0 * x, sign * h * v)
                rows.append((x + dx, da))
            steps.append(h)
    scores = run(np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows]))[:, target]
    numeric = (scores[0::2] - scores[1::2]) / (2 * np.array(steps))
    elem = next(i for i in m.proto.graph.input if i.name == m.image_input).type.tensor_type.elem_type
    checks = []
    for k, name in enumerate(wrt):
        g = p.outputs[grad_name(name)].astype(np.float64)
        analytic = np.array([float((g * v).sum()) for v in dirs[name]])
        checks.append(GradientCheck(name, analytic, numeric[k * directions:(k + 1) * directions], oracle,
                                    TOLERANCE[elem]))
    return checks


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
    try:
        session = make_session(p, "cpu")
        session.run(None, {image: np.zeros([1, *_dims(proto, image)[1:]]), PERTURB: np.zeros([1, *layer_shape[1:]])})
        return "onnxruntime float64", lambda x, d: session.run(None, {image: x.astype(np.float64), PERTURB: d})[0]
    except OnnxcamError:
        pass
    except Exception:  # ORT lacks a float64 kernel (Conv, GlobalAveragePool...)
        pass
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(p)
    return "onnx reference float64", lambda x, d: evaluator.run(None, {image: x.astype(np.float64), PERTURB: d})[0]


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
    vi = next(i for i in proto.graph.input if i.name == name)
    return [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]

