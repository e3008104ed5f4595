"""Self-contained explainer models: ONNX in → ONNX that also outputs the method's `heatmap`.

The exported graph keeps the model's inputs and outputs and adds an int64 input `target` ((N,) or (1,),
−1 = top-1; default [−1]) and the outputs `heatmap` (N, H, W) in [0, 1] plus `cam` (N, h, w) for CAM methods
or `attribution` (like the input) for input-level methods. Everything an `Explainer.explain` call computes in
numpy happens inside the graph, so a stock ONNX Runtime (or Triton) serves explanations:

- rows: the inputs of every path step / noise sample are built in the graph, step-major, with the clean
  input as the last slot: (S, N, C, H, W) → (S·N, C, H, W). The network runs once on that batch (its
  weights appear once in the file); per-row results are read back as (S, N, ...).
- seed: one_hot(where(target < 0, argmax(logits of the clean rows), target)), repeated for every step.
- method math and map post-processing as in onnxcam.methods (per-image min-max with 1e-7, Resize linear
  half_pixel = OpenCV INTER_LINEAR when upscaling, min-max again).
"""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .autodiff.builder import GRAD_SEED, build_gradients, grad_name, names_in, refuse_taken
from .errors import OnnxcamError
from .layers import Layer, resolve_layer
from .methods.common import EPS
from .model import Model, load_model
from .surgery import PROB, SCORES, TARGET, score_tensor

CAM_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "rsi-gradcam", "integrated-gradcam",
               "smooth-gradcam++")
INPUT_METHODS = ("ig", "saliency", "smoothgrad")
METHODS = CAM_METHODS + INPUT_METHODS
HEATMAP, CAM, ATTRIBUTION = "heatmap", "cam", "attribution"
ROWS = "onnxcam_rows"  # the network's input inside an exported path-method graph: (S·N, C, H, W)
_NOT_EXPORTED = {"batch_size": None, "path": "input"}  # Explainer options that have no meaning in one graph


def export(model, method: str, layer: str = "auto", **options) -> onnx.ModelProto:
    """An ONNX model computing the model's outputs and `method`'s heatmap for its input, in one run.

    `options` are the method's options in Explainer.explain (steps, baseline, score, samples, sigma, ...);
    unset ones take the same defaults. Noise methods draw from RandomNormalLike(seed): ONNX Runtime gives
    a fresh session the same draws, and each further run of that session new ones (numpy's noise in
    Explainer differs)."""
    m = load_model(model)
    if method not in METHODS:
        raise OnnxcamError(f"method {method!r} cannot be exported; choose one of {', '.join(METHODS)}")
    opts = _options(method, options)
    _check_exportable(m)
    chosen = resolve_layer(m, layer) if method in CAM_METHODS else None
    proto = _Export(m, method, chosen, opts).build()
    _check_loads(proto, m)
    return proto


# ------------------------------------------------------------------ options and checks


def _options(method: str, options: dict) -> dict:
    from .methods import METHODS as REGISTRY

    params = inspect.signature(REGISTRY[method]).parameters
    allowed = [p for p in params if p not in ("ex", "x", "targets", "layer")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise OnnxcamError(f"method {method!r} has no option {unknown[0]!r}; its options are {', '.join(allowed)}")
    opts = {p: params[p].default for p in allowed}
    opts.update(options)
    for name, only in _NOT_EXPORTED.items():
        if name in opts and opts[name] != only:
            raise OnnxcamError(f"option {name}={opts[name]!r} cannot be exported (the graph runs every row in one "
                               f"batch on the input-space path); leave it unset")
    if opts.get("score", "logit") not in SCORES:
        raise OnnxcamError(f"unknown score {opts['score']!r}; choose 'logit' or 'prob'")
    for name in ("steps", "samples"):
        if name in opts:
            v = opts[name]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 10_000:
                raise OnnxcamError(f"{name} must be an integer in 1..10000; got {v!r}")
    sigma = opts.get("sigma", 0.0)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)) or not (np.isfinite(sigma) and sigma >= 0):
        raise OnnxcamError(f"sigma must be a finite number >= 0 (a fraction of the input range); got {opts['sigma']!r}")
    if "seed" in opts and (isinstance(opts["seed"], bool) or not isinstance(opts["seed"], (int, np.integer))):
        raise OnnxcamError(f"seed must be an integer; got {opts['seed']!r}")
    return opts


def _check_exportable(m: Model) -> None:
    g = m.proto.graph
    inits = {t.name for t in g.initializer}
    image = next(i for i in g.input if i.name == m.image_input)
    if image.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise OnnxcamError("only float32 image inputs can be exported; convert the model to float32")
    if image.type.tensor_type.shape.dim[0].HasField("dim_value"):
        raise OnnxcamError("the model's batch size is fixed and could not be made dynamic; re-export it with a "
                           "dynamic batch axis")
    others = [i.name for i in g.input if i.name not in inits and i.name != m.image_input]
    if others:
        raise OnnxcamError(f"the model has inputs besides the image ({others[:3]}); only single-input models export")
    if not all(m.image_size):
        raise OnnxcamError("the model's input height and width are dynamic; export a model with a fixed input size")
    names = {o for n in g.node for o in n.output} | {i.name for i in g.input} | inits
    taken = sorted(names & {TARGET, HEATMAP, CAM, ATTRIBUTION, ROWS, PROB})
    if taken:
        raise OnnxcamError(f"the model already has a tensor named {taken[0]!r}; rename it before exporting")


def _check_loads(proto: onnx.ModelProto, m: Model) -> None:
    """The export must load in ONNX Runtime. When it does not because the model itself does not (node names used
    twice, an attribute value ORT does not know), that is the one-line error; otherwise it is a bug in the export."""
    from .runtime import make_session

    try:
        make_session(proto, "cpu", threads=1)
    except OnnxcamError as e:
        make_session(m.proto, "cpu", threads=1)  # raises "ONNX Runtime cannot load the model: ..."
        raise RuntimeError(f"the exported model does not load in ONNX Runtime: {e}") from None


# ------------------------------------------------------------------ node emission


class _Emitter:
    """Nodes and constants for the export, in the forms the model's opset wants."""

    def __init__(self, opset: int, taken: set[str] = frozenset()):
        self.opset = opset
        self._taken = taken  # the model's names: fresh names skip them
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        while f"onnxcam_export/{hint}_{self._count}" in self._taken:
            self._count += 1
        return f"onnxcam_export/{hint}_{self._count}"

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        node = self.fresh(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out or node], name=node, **attrs))
        return out or node

    def const(self, value, dtype=np.float32) -> str:
        name = self.fresh("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(values, np.int64).reshape(-1), np.int64)

    def reduce(self, op_type: str, x: str, axes, keepdims: int = 1) -> str:
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, x, self.ints(axes), keepdims=keepdims)
        return self.op(op_type, x, axes=[int(a) for a in axes], keepdims=keepdims)

    def slice(self, x: str, start: int, end: int, axis: int = 0) -> str:
        return self.op("Slice", x, self.ints([start]), self.ints([end]), self.ints([axis]))

    def relu(self, x: str) -> str:
        return self.op("Relu", x)

    def normalize(self, maps: str) -> str:
        """(m − min) / (span + 1e-7·clip(span, tiny, 1)), span = max(m − min), per image over axes 1, 2
        (methods.common.normalize_maps)."""
        shifted = self.op("Sub", maps, self.reduce("ReduceMin", maps, [1, 2]))
        span = self.reduce("ReduceMax", shifted, [1, 2])
        eps = self.op("Mul", self.const(EPS), self.op("Clip", span, self.const(np.finfo(np.float32).tiny), self.const(1.0)))
        return self.op("Div", shifted, self.op("Add", span, eps))


# ------------------------------------------------------------------ the graph


class _Export:
    def __init__(self, m: Model, method: str, layer: Layer | None, opts: dict):
        self.m, self.method, self.layer, self.opts = m, method, layer, opts
        self.e = _Emitter(m.opset, names_in(m.proto))
        self.steps = self._slots()  # S: rows per image; the clean input is slot S − 1
        self._base: str | None = None

    def _slots(self) -> int:
        o = self.opts
        if self.method in ("rsi-gradcam", "integrated-gradcam", "ig"):
            return o["steps"] + 1  # the path points, then x (for rsi-gradcam x is the path's end α_m = 1)
        if self.method in ("smooth-gradcam++", "smoothgrad"):
            return o["samples"] + 1
        return 1

    # -- assembly ---------------------------------------------------------------------------
    def build(self) -> onnx.ModelProto:
        m, e, s = self.m, self.e, self.steps
        proto = onnx.ModelProto()
        proto.CopyFrom(m.proto)
        originals = [_copy_vi(o) for o in proto.graph.output]
        if s > 1:
            batched = [o.name for o in originals if _batch_dim(o) is None]
            if batched:
                raise OnnxcamError(f"output {batched[0]!r} has no dynamic batch axis; path methods need one on every output")
        renames = {m.image_input: ROWS, **{o.name: f"{o.name}/rows" for o in originals}} if s > 1 else {}
        refuse_taken(m.proto, renames.values())
        _rename(proto, renames)
        net = dataclasses.replace(m, proto=proto, image_input=renames.get(m.image_input, m.image_input),
                                  logits=renames.get(m.logits, m.logits),
                                  score_output=renames.get(m.score_output, m.score_output))
        score = score_tensor(net, proto, self.opts.get("score", "logit"))
        wrt = self.layer.name if self.layer is not None else net.image_input
        proto = build_gradients(proto, [wrt], score)
        g = proto.graph

        x = m.image_input
        self.n = e.op("Shape", x, end=1)  # (1,) the batch of the request
        if s > 1:
            g.input.insert(0, _input_like(next(i for i in g.input if i.name == ROWS), x))
            self._rows(x)
        self._seed(proto, net.logits, score)
        grads = grad_name(wrt)
        if self.layer is not None:
            a, g_layer = (self._float32(t) for t in (self.layer.name, grads))
            cam = self._cam(self._grid(a), self._grid(g_layer))
            outputs = {HEATMAP: self._heatmap(cam), CAM: cam}
        else:
            attribution, heatmap = self._attribution(x, grads)
            outputs = {HEATMAP: heatmap, ATTRIBUTION: attribution}
        for o in originals if s > 1 else ():  # the model's own outputs, at the clean input
            e.op("Identity", self._clean(renames[o.name]), out=o.name)
        for name, t in outputs.items():
            e.op("Identity", t, out=name)
        g.node.extend(e.nodes)
        g.initializer.extend(e.initializers)
        del g.output[:]
        g.output.extend(originals + [self._output_info(name) for name in outputs])
        for vi in list(g.input):
            if vi.name in (ROWS, GRAD_SEED):
                g.input.remove(vi)
        g.input.append(helper.make_tensor_value_info(TARGET, TensorProto.INT64, ["T"]))
        g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), TARGET))
        _toposort(g)
        _prune(g)
        proto = _finish(proto, m)
        props = {"onnxcam.method": self.method, "onnxcam.layer": self.layer.name if self.layer else "",
                 "onnxcam.options": json.dumps({k: _jsonable(v) for k, v in self.opts.items()}, sort_keys=True)}
        for k, v in props.items():
            proto.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        return proto

    # -- rows ------------------------------------------------------------------------------
    def _rows(self, x: str) -> None:
        """ROWS = the (S·N, C, H, W) batch: path points or noisy samples in slots 0..S−2, x in slot S − 1."""
        e, o = self.e, self.opts
        x5 = e.op("Unsqueeze", x, e.ints([0]))
        if self.method in ("smooth-gradcam++", "smoothgrad"):
            flat = e.op("Reshape", x, e.ints([0, -1]))
            spread = e.op("Mul", e.const(float(o["sigma"])),
                          e.op("Sub", e.reduce("ReduceMax", flat, [1]), e.reduce("ReduceMin", flat, [1])))
            spread = e.op("Reshape", spread, e.ints([-1, 1, 1, 1]))  # (N, 1, 1, 1)
            shape = e.op("Concat", e.ints([o["samples"]]), e.op("Shape", x), axis=0)
            noise = e.op("RandomNormalLike", e.op("Expand", x5, shape), seed=float(o["seed"]))
            path = e.op("Add", x5, e.op("Mul", spread, noise))
        else:
            alphas = self._alphas()
            base = self._baseline()
            a5 = e.const(alphas.astype(np.float32).reshape(-1, 1, 1, 1, 1))
            path = e.op("Add", base, e.op("Mul", a5, e.op("Sub", x5, base)))  # x' + α (x − x'), as methods.path
        stacked = e.op("Concat", path, x5, axis=0)
        e.op("Reshape", stacked, e.op("Concat", e.ints([-1]), e.op("Shape", x, start=1), axis=0), out=ROWS)

    def _alphas(self) -> np.ndarray:
        from .methods.attribution import quadrature_nodes

        n = self.opts["steps"]
        if self.method == "rsi-gradcam":
            return np.linspace(0.0, 1.0, n + 1)[:-1]
        if self.method == "integrated-gradcam":
            return np.arange(n) / n
        return quadrature_nodes(self.opts["quadrature"], n)[0]

    def _baseline(self) -> str:
        if self._base is None:
            self._base = self.e.const(self._baseline_value())
        return self._base

    def _baseline_value(self) -> np.ndarray:
        from .methods.common import baseline_value

        b = np.asarray(baseline_value(self.m, self.opts["baseline"]), np.float32)
        image = (1, *self.m.input_shape[1:])
        try:
            np.broadcast_shapes(b.shape, image)
        except ValueError:
            raise OnnxcamError(f"baseline of shape {b.shape} does not broadcast to one input {image}") from None
        if b.ndim > len(image) or not np.isfinite(b).all():
            raise OnnxcamError("the baseline must be finite and have no more dims than one input (1, C, H, W)")
        return b

    # -- seed ------------------------------------------------------------------------------
    def _seed(self, proto: onnx.ModelProto, logits: str, score: str) -> None:
        """grad_seed = one_hot(class of the image the row belongs to), the class chosen at the clean row."""
        e = self.e
        seed_vi = next(i for i in proto.graph.input if i.name == GRAD_SEED)
        dtype = helper.tensor_dtype_to_np_dtype(seed_vi.type.tensor_type.elem_type)
        target = e.op("Expand", TARGET, self.n)  # (1,) serves every image
        top1 = e.op("ArgMax", self._clean(logits), axis=-1, keepdims=0)
        chosen = e.op("Where", e.op("Less", target, e.const(0, np.int64)), top1, target)
        rows = e.op("Tile", chosen, e.ints([self.steps])) if self.steps > 1 else chosen
        classes = e.op("Shape", score, start=-1)
        e.op("OneHot", rows, classes, e.const([0, 1], dtype), axis=-1, out=GRAD_SEED)

    # -- per-row tensors -------------------------------------------------------------------
    def _clean(self, t: str) -> str:
        """The rows of slot S − 1 (the unperturbed input) of a (S·N, ...) tensor."""
        if self.steps == 1:
            return t
        e = self.e
        start = e.op("Mul", e.ints([self.steps - 1]), self.n)
        return e.op("Slice", t, start, e.ints([np.iinfo(np.int64).max]), e.ints([0]))

    def _float32(self, t: str) -> str:
        """The layer (or its gradient, which has the layer's type) in float32: an fp16, bf16 or float64 layer is read
        in float32 for the method's math, as the Explainer reads every result."""
        vi = next((v for v in [*self.m.proto.graph.value_info, *self.m.proto.graph.output]
                   if v.name == self.layer.name), None)
        if vi is None or vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            return t
        return self.e.op("Cast", t, to=TensorProto.FLOAT)

    def _grid(self, t: str) -> str:
        """A layer tensor as (N, K, h, w) maps, or (S, N, K, h, w) for several slots (methods.common.to_grid)."""
        e, layer = self.e, self.layer
        if layer.layout == "NTD":
            h, w = layer.grid
            tokens = e.slice(t, layer.class_tokens, np.iinfo(np.int64).max, axis=1)
            t = e.op("Reshape", tokens, e.ints([0, h, w, layer.shape[2]]))
        if layer.layout != "NCHW":
            t = e.op("Transpose", t, perm=[0, 3, 1, 2])
        if self.steps == 1:
            return t
        return e.op("Reshape", t, e.op("Concat", e.ints([self.steps, -1]), e.op("Shape", t, start=1), axis=0))

    def _steps(self, t: str, count: int | None = None) -> str:
        """Slots 0..count−1 of a (S, N, ...) tensor (default: every slot but the clean one)."""
        return self.e.slice(t, 0, self.steps - 1 if count is None else count)

    def _slot(self, t: str, k: int) -> str:
        return self.e.op("Gather", t, self.e.const(k, np.int64), axis=0)

    # -- CAM methods -----------------------------------------------------------------------
    def _cam(self, a: str, g: str) -> str:
        e, method, o = self.e, self.method, self.opts
        if method in ("gradcam", "gradcam++", "xgradcam"):
            w = {"gradcam": self._gradcam_w, "gradcam++": self._gradcam_pp_w, "xgradcam": self._xgradcam_w}[method](a, g)
            return self._weighted(w, a)
        if method == "layercam":
            return e.relu(e.reduce("ReduceSum", e.op("Mul", e.relu(g), a), [1], keepdims=0))
        if method == "hirescam":
            return e.relu(e.reduce("ReduceSum", e.op("Mul", g, a), [1], keepdims=0))
        if method == "rsi-gradcam":
            return self._rsi(a, g, o)
        if method == "integrated-gradcam":
            w = e.reduce("ReduceMean", self._steps(g), [3, 4])  # (M, N, K, 1, 1)
            maps = e.relu(e.reduce("ReduceSum", e.op("Mul", w, self._steps(a)), [2], keepdims=0))
            return e.reduce("ReduceSum", maps, [0], keepdims=0)
        return self._smooth_gradcam_pp(a, g, o)

    def _weighted(self, w: str, a: str) -> str:
        """ReLU(Σ_k w_k A^k) with w (N, K, 1, 1)."""
        return self.e.relu(self.e.reduce("ReduceSum", self.e.op("Mul", w, a), [1], keepdims=0))

    def _gradcam_w(self, a, g):
        return self.e.reduce("ReduceMean", g, [2, 3])

    def _gradcam_pp_w(self, a, g):
        e = self.e
        g2 = e.op("Mul", g, g)
        total = e.reduce("ReduceSum", a, [2, 3])
        denom = e.op("Add", e.op("Add", e.op("Mul", e.const(2.0), g2), e.op("Mul", e.op("Mul", total, g2), g)),
                     e.const(1e-6))
        alpha = e.op("Div", g2, denom)
        alpha = e.op("Where", e.op("Equal", g, e.const(0.0)), e.const(0.0), alpha)
        return e.reduce("ReduceSum", e.op("Mul", e.relu(g), alpha), [2, 3])

    def _xgradcam_w(self, a, g):
        e = self.e
        total = e.op("Add", e.reduce("ReduceSum", a, [2, 3]), e.const(1e-7))
        return e.reduce("ReduceSum", e.op("Div", e.op("Mul", g, a), total), [2, 3])

    def _rsi(self, a: str, g: str, o: dict) -> str:
        """R = Σ_i ½(G_{i−1} + G_i)(A_i − A_{i−1}) over slots 0..m; w = mean_ij R; ReLU(mean_k w_k A^k(x))."""
        e, m = self.e, o["steps"]
        if o["rule"] not in ("trapezoid", "left"):
            raise OnnxcamError(f"rule must be 'trapezoid' or 'left'; got {o['rule']!r}")
        g = e.relu(g) if o["grad_relu"] else g
        prev, nxt = e.slice(g, 0, m), e.slice(g, 1, m + 1)
        da = e.op("Sub", e.slice(a, 1, m + 1), e.slice(a, 0, m))
        mid = e.op("Mul", e.const(0.5), e.op("Add", prev, nxt)) if o["rule"] == "trapezoid" else prev
        total = e.reduce("ReduceSum", e.op("Mul", mid, da), [0], keepdims=0)
        w = e.reduce("ReduceMean", total, [2, 3])
        acts = self._slot(a, m)
        summed = e.reduce("ReduceSum", e.op("Mul", w, acts), [1], keepdims=0)
        return e.relu(e.op("Div", summed, e.const(float(self.layer_channels))))

    @property
    def layer_channels(self) -> int:
        layer = self.layer
        return layer.shape[1] if layer.layout == "NCHW" else layer.shape[-1]

    def _smooth_gradcam_pp(self, a: str, g: str, o: dict) -> str:
        """D_p = ⟨G^p⟩ over the noisy slots; α = D2 / (2 D2 + Σ_ab A · D3); w_k = Σ_ij α ReLU(D1); A clean."""
        e = self.e
        noisy = self._steps(g)
        g2 = e.op("Mul", noisy, noisy)
        d1, d2, d3 = (e.reduce("ReduceMean", t, [0], keepdims=0) for t in (noisy, g2, e.op("Mul", g2, noisy)))
        acts = self._slot(a, self.steps - 1)
        h, w = self.layer.grid
        if o["neurons"] is not None:
            mask = np.asarray(o["neurons"], bool)
            if mask.shape != (h, w):
                raise OnnxcamError(f"neurons must be a boolean mask of the layer grid {(h, w)}; got {mask.shape}")
            keep = e.const(mask.astype(np.float32))
            d1, d2, d3 = (e.op("Mul", d, keep) for d in (d1, d2, d3))
        denom = e.op("Add", e.op("Mul", e.const(2.0), d2), e.op("Mul", e.reduce("ReduceSum", acts, [2, 3]), d3))
        zero = e.op("Equal", denom, e.const(0.0))
        alpha = e.op("Where", zero, e.const(0.0), e.op("Div", d2, e.op("Where", zero, e.const(1.0), denom)))
        weights = e.reduce("ReduceSum", e.op("Mul", alpha, e.relu(d1)), [2, 3])
        if o["channels"] is not None:
            keep = np.zeros(self.layer_channels, bool)
            try:
                keep[np.asarray(o["channels"], int)] = True
            except (IndexError, ValueError):
                raise OnnxcamError(f"channels must be indices in 0..{len(keep) - 1}; got {o['channels']!r}") from None
            weights = e.op("Mul", weights, e.const(keep.astype(np.float32).reshape(1, -1, 1, 1)))
        return self._weighted(weights, acts)

    def _heatmap(self, cam: str) -> str:
        """Normalize, Resize linear half_pixel to (H, W) (OpenCV INTER_LINEAR), normalize (methods.common.heatmaps)."""
        e = self.e
        h, w = self.m.image_size
        maps = e.op("Unsqueeze", self.e.normalize(cam), e.ints([1]))
        sizes = e.op("Concat", e.op("Shape", maps, end=2), e.ints([h, w]), axis=0)
        resized = e.op("Resize", maps, "", "", sizes, mode="linear", coordinate_transformation_mode="half_pixel")
        return e.normalize(e.op("Squeeze", resized, e.ints([1])))

    # -- input-level methods ---------------------------------------------------------------
    def _attribution(self, x: str, grads: str) -> tuple[str, str]:
        e, o, method = self.e, self.opts, self.method
        axis = 1 if self.m.layout == "NCHW" else 3
        if method == "saliency":
            magnitude = e.reduce("ReduceMax", e.op("Abs", grads), [axis], keepdims=0)
            return grads, e.normalize(magnitude)
        per_slot = e.op("Reshape", grads, e.op("Concat", e.ints([self.steps, -1]), e.op("Shape", grads, start=1), axis=0))
        g = self._steps(per_slot)
        if method == "ig":
            from .methods.attribution import quadrature_nodes

            weights = quadrature_nodes(o["quadrature"], o["steps"])[1]
            total = e.reduce("ReduceSum", e.op("Mul", g, e.const(weights.reshape(-1, 1, 1, 1, 1))), [0], keepdims=0)
            attribution = e.op("Mul", e.op("Sub", x, self._baseline()), total)
        else:
            if o["variant"] not in ("smoothgrad", "smoothgrad_sq", "vargrad"):
                raise OnnxcamError(f"variant must be smoothgrad, smoothgrad_sq or vargrad; got {o['variant']!r}")
            m1 = e.reduce("ReduceMean", g, [0], keepdims=0)
            m2 = e.reduce("ReduceMean", e.op("Mul", g, g), [0], keepdims=0)
            attribution = {"smoothgrad": m1, "smoothgrad_sq": m2,
                           "vargrad": e.op("Sub", m2, e.op("Mul", m1, m1))}[o["variant"]]
        return attribution, e.normalize(e.reduce("ReduceSum", e.op("Abs", attribution), [axis], keepdims=0))

    def _output_info(self, name: str) -> onnx.ValueInfoProto:
        batch = _batch_dim(next(i for i in self.m.proto.graph.input if i.name == self.m.image_input))
        h, w = self.m.image_size
        if name == HEATMAP:
            dims = [batch, h, w]
        elif name == CAM:
            dims = [batch, *self.layer.grid]
        else:
            dims = [batch, *self.m.input_shape[1:]]
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


# ------------------------------------------------------------------ graph utilities


def _copy_vi(vi: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(vi)
    return out


def _input_like(vi: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    out = _copy_vi(vi)
    out.name = name
    return out


def _batch_dim(vi: onnx.ValueInfoProto) -> str | None:
    """The name of a tensor's symbolic batch axis ("N" when unnamed), or None when it is fixed or absent."""
    dims = vi.type.tensor_type.shape.dim
    if not dims or dims[0].HasField("dim_value"):
        return None
    return dims[0].dim_param or "N"


def _rename(proto: onnx.ModelProto, names: dict[str, str]) -> None:
    if not names:
        return
    g = proto.graph
    for node in g.node:
        node.input[:] = [names.get(i, i) for i in node.input]
        node.output[:] = [names.get(o, o) for o in node.output]
    for vi in [*g.input, *g.output, *g.value_info]:
        vi.name = names.get(vi.name, vi.name)


def _prune(g: onnx.GraphProto) -> None:
    """Drop nodes and initializers nothing reads (the gradient graph's own outputs, unused exposures)."""
    wanted = {o.name for o in g.output}
    keep = []
    for node in reversed(g.node):
        if any(o in wanted for o in node.output):
            keep.append(node)
            wanted.update(i for i in node.input if i)
    kept = keep[::-1]
    del g.node[:]
    g.node.extend(kept)
    used = wanted | {i.name for i in g.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)


def _toposort(g: onnx.GraphProto) -> None:
    """Stable topological order (rows before the network, the seed between forward and backward)."""
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise OnnxcamError(f"internal error: export graph has a cycle or a missing tensor at {rest[0].name!r}")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


def _finish(proto: onnx.ModelProto, m: Model) -> onnx.ModelProto:
    """Fresh shape inference, the model's opset and the lowest IR version that opset allows."""
    del proto.graph.value_info[:]
    del proto.opset_import[:]
    proto.opset_import.extend(m.proto.opset_import)
    proto.ir_version = helper.find_min_ir_version_for(proto.opset_import)
    try:
        return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # shapes are an aid to runtimes, not needed to run
        return proto


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return v
