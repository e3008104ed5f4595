"""Self-contained explainer models: ONNX in → ONNX that also outputs the method's `heatmap`.

The exported graph keeps the model's inputs and outputs and adds an int64 input `target` ((N,) or (1,),
−1 = top-1; default [−1]) and the outputs `heatmap` (N, H, W) in [0, 1] plus `cam` (N, h, w) for CAM methods
or `attribution` (like the input) for input-level methods. The method's own definition (onnxcam.methods) is run
on symbolic tensors, so the graph computes what `Explainer.explain` computes, and a stock ONNX Runtime (or
Triton) serves explanations:

- rows: the rows of every path step / noise sample are built in the graph, step-major, with the clean input as
  the last slot: (S, N, C, H, W) → (S·N, C, H, W). The network runs once on that batch (its weights appear once
  in the file); per-row results are read back as (S, N, ...).
- seed: one_hot(where(target < 0, argmax(logits of the clean rows), target)), repeated for every step.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import methods
from .autodiff.builder import GRAD_SEED, Builder, build_gradients, grad_name, refuse_taken
from .errors import OnnxcamError, UsageError
from .layers import Layer, head_inputs, resolve_layer
from .methods.arrays import OnnxArrays, Symbol
from .methods.common import baseline_value
from .methods.definition import Context, Gradient, Noise, Path, Row, Single
from .methods.maps import cam_heatmap, normalize, pixel_map
from .methods.options import Options
from .model import Model, load_model, tensor_dims
from .surgery import LOGITS, PROB, TARGET, rows_of_one_hot, score_tensor

HEATMAP, CAM, ATTRIBUTION = "heatmap", "cam", "attribution"
NOISE = "noise"  # the optional input of standard-normal draws (noise methods exported with noise_input=True)
MASK, ANCHOR, SEED = "mask", "anchor", "seed"  # the inputs of segmentation, detection and seed targets
TARGETS = ("class", "segmentation", "detection", "seed")
ROWS = "onnxcam_rows"  # the network's input inside an exported path-method graph: (S·N, C, H, W)


def export(model, method: str, layer: str = "auto", noise_input: bool = False, output: str | int | None = None,
           target: str = "class", runs_on: str = "cpu", **options) -> onnx.ModelProto:
    """An ONNX model computing the model's outputs and `method`'s heatmap for its input, in one run.

    `options` are the method's options in Explainer.explain, with the same defaults. Noise methods draw from
    RandomNormalLike(seed): ONNX Runtime gives a fresh session the same draws, and each further run of that session
    new ones; with `noise_input` the draws are an input `noise` (samples, N, ...) instead, to replay a run.

    `output` names the tensor to explain and `target` what the exported model takes as inputs to choose in it:
    "class" (int64 `target`, −1 = top-1), "segmentation" (`target` category and a bool `mask` (N or 1, H, W) of the
    output's pixels), "detection" (`target` category and `anchor`, the anchor of a YOLO-style raw output) or "seed"
    (`seed`, weights shaped like the output, N or 1 rows) — the onnxcam.targets objects as graph inputs.

    `runs_on` "cpu" gives the gradient forms that suit ONNX Runtime's CPU provider; "cuda" or "tensorrt" plain ops."""
    if runs_on not in ("cpu", "cuda", "tensorrt"):
        raise UsageError(f"runs_on must be cpu, cuda or tensorrt; got {runs_on!r}")
    if target not in TARGETS:
        raise UsageError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    m = load_model(model, output=output)
    if target == "class" and output is not None and len(tensor_dims(m.proto, m.logits) or ()) != 2:
        raise UsageError(f"output {m.logits!r} is not class scores (N, classes); export it with target='segmentation', "
                         "'detection' or 'seed'")
    definition = methods.get(method)
    if not isinstance(definition, Gradient):
        raise UsageError(f"method {method!r} cannot be exported; choose one of {', '.join(methods.exportable())}")
    opts = definition.options.of(method, options)
    why = definition.exportable(opts)
    if why:
        raise UsageError(f"{method} with these options cannot be exported: {why}")
    _check_exportable(m)
    if target != "class" and opts.score != "logit":
        raise UsageError(f"score={opts.score!r} is a class probability; a {target} target weighing the output "
                         "explains the output itself: pass score='logit'")
    if definition.needs_layer and layer == "auto" and target != "class":
        heads = head_inputs(m)
        if len(heads) > 1:
            raise UsageError(f"the output's heads read {len(heads)} layers and an export explains one; name it with "
                             f"layer= (--layer), e.g. {heads[0].name!r}")
        chosen = heads[0]
    else:
        chosen = resolve_layer(m, layer) if definition.needs_layer else None
    proto = _Export(m, definition, chosen, opts, noise_input, target, runs_on == "cpu").build()
    _check_loads(proto, m)
    return proto


def engine_graph(m: Model, definition: Gradient, layer: Layer, opts: Options, cpu: bool) -> onnx.ModelProto | None:
    """The export of a one-row CAM for the engine: class `target` in, heatmap and cam out (and the logits as the
    runner reads them), so that a call is one ONNX Runtime run and only maps come back. None where export refuses."""
    if not isinstance(definition.rows(opts), Single) or definition.exportable(opts):
        return None
    try:
        _check_exportable(m)
    except OnnxcamError:
        return None
    proto = _Export(m, definition, layer, opts, False, "class", cpu).build(shapes=False)
    defaults = [t for t in proto.graph.initializer if t.name == TARGET]  # the engine always feeds the target
    for t in defaults:
        proto.graph.initializer.remove(t)
    proto.graph.node.append(helper.make_node("Cast", [m.logits], [LOGITS], to=TensorProto.FLOAT, name=LOGITS))
    proto.graph.output.append(helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, None))
    return proto


# ------------------------------------------------------------------ checks


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
        raise OnnxcamError("the model's input size is dynamic; export a model with a fixed input size")
    names = {o for n in g.node for o in n.output} | {i.name for i in g.input} | inits
    taken = sorted(names & {TARGET, HEATMAP, CAM, ATTRIBUTION, ROWS, PROB, NOISE, MASK, ANCHOR, SEED})
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


# ------------------------------------------------------------------ the graph


class _Export:
    """The model run on every row, its gradients read per slot, and the method's definition run on symbols."""

    def __init__(self, m: Model, d: Gradient, layer: Layer | None, opts: Options, noise_input: bool, target: str,
                 cpu: bool):
        self.m, self.d, self.layer, self.opts, self.noise_input = m, d, layer, opts, noise_input
        self.target, self.cpu = target, cpu
        self.plan = d.rows(opts)
        if isinstance(self.plan, Single):
            self.path_rows, self.steps = 1, 1
        elif isinstance(self.plan, Noise):
            self.path_rows = self.plan.samples
            self.steps = self.path_rows + 1
        else:
            self.path_rows = len(self.plan.alphas)
            self.steps = self.path_rows + (0 if self.plan.alphas[-1] == 1 else 1)  # a path ending at x ends on the slot
        self.base = self._baseline() if isinstance(self.plan, Path) else None

    def build(self, shapes: bool = True) -> onnx.ModelProto:
        """The graph; `shapes`: with inferred value shapes, an aid to other runtimes that ONNX Runtime does not need."""
        m, s = self.m, self.steps
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
        score = score_tensor(net, proto, self.opts.score)
        wrt = self.layer.name if self.layer is not None else net.image_input
        self.uniform: dict[str, str] = {}
        proto = build_gradients(proto, [wrt], score, self.cpu, self.uniform)
        g = proto.graph
        self.b = Builder(proto)
        self.ops = OnnxArrays(self.b, self.layer.rank if self.layer is not None else m.rank,
                              self.layer.grid if self.layer is not None else None)

        x = m.image_input
        self.n = self.b.op("Shape", x, end=1)  # (1,) the batch of the request
        if s > 1:
            g.input.insert(0, _input_like(next(i for i in g.input if i.name == ROWS), x))
            self._rows(x)
        self._seed(proto, net.logits, score)
        outputs = self._method(x, grad_name(wrt))
        for o in originals if s > 1 else ():  # the model's own outputs, at the clean input
            self.b.nodes.append(helper.make_node("Identity", [self._clean(renames[o.name])], [o.name], name=o.name))
        for name, t in outputs.items():
            self.b.nodes.append(helper.make_node("Identity", [t.name], [name], name=name))
        g.node.extend(self.b.nodes)
        g.initializer.extend(self.b.initializers)
        if self.target == "class":
            rows_of_one_hot(proto, self.class_rows)
        del g.output[:]
        g.output.extend(originals + [self._output_info(name) for name in outputs])
        for vi in list(g.input):
            if vi.name in (ROWS, GRAD_SEED):
                g.input.remove(vi)
        g.input.extend(self._target_inputs())
        if self.target == "class":
            g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), TARGET))
        if self.noise_input and isinstance(self.plan, Noise):
            g.input.append(helper.make_tensor_value_info(NOISE, TensorProto.FLOAT, [self.path_rows, "N",
                                                                                    *m.input_shape[1:]]))
        _toposort(g)
        _prune(g)
        proto = _finish(proto, m, shapes)
        props = {"onnxcam.method": self.d.name, "onnxcam.layer": self.layer.name if self.layer else "",
                 "onnxcam.options": json.dumps(self.opts.asdict(), sort_keys=True)}
        for k, v in props.items():
            proto.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        return proto

    # -- rows ------------------------------------------------------------------------------
    def _rows(self, x: str) -> None:
        """ROWS = the (S·N, C, H, W) batch: path points or noisy samples in the first slots, x in slot S − 1."""
        b, plan = self.b, self.plan
        x5 = b.op("Unsqueeze", x, b.ints([0]))
        if isinstance(plan, Noise):
            flat = b.op("Reshape", x, b.ints([0, -1]))
            spread = b.op("Mul", b.const(np.float32(plan.sigma)),
                          b.op("Sub", b.reduce("ReduceMax", flat, [1]), b.reduce("ReduceMin", flat, [1])))
            spread = b.op("Reshape", spread, b.ints([-1, *[1] * (len(self.m.input_shape) - 1)]))  # (N, 1, 1, 1)
            if self.noise_input:
                draws = NOISE
            else:
                shape = b.op("Concat", b.ints([plan.samples]), b.op("Shape", x), axis=0)
                draws = b.op("RandomNormalLike", b.op("Expand", x5, shape), seed=float(plan.seed))
            path = b.op("Add", x5, b.op("Mul", spread, draws))
        else:
            alphas = plan.alphas[: self.steps - 1]  # a path ending at α = 1 takes x itself as its last row
            a5 = b.const(alphas.astype(np.float32).reshape(-1, *[1] * len(self.m.input_shape)))
            base = b.const(self.base, dtype=np.float32)
            path = b.op("Add", base, b.op("Mul", a5, b.op("Sub", x5, base)))  # x' + α (x − x')
        stacked = b.op("Concat", path, x5, axis=0)
        b.nodes.append(helper.make_node("Reshape", [stacked, b.op("Concat", b.ints([-1]), b.op("Shape", x, start=1),
                                                                    axis=0)], [ROWS], name=ROWS))

    def _baseline(self) -> np.ndarray:
        b = baseline_value(self.m, self.plan.baseline)
        image = (1, *self.m.input_shape[1:])
        try:
            np.broadcast_shapes(b.shape, image)
        except ValueError:
            raise UsageError(f"baseline of shape {b.shape} does not broadcast to one input {image}") from None
        if b.ndim > len(image):
            raise UsageError("the baseline must have no more dims than one input (1, C, H, W)")
        return b

    # -- seed ------------------------------------------------------------------------------
    def _target_inputs(self) -> list[onnx.ValueInfoProto]:
        vi = helper.make_tensor_value_info
        if self.target == "class":
            return [vi(TARGET, TensorProto.INT64, ["T"])]
        if self.target == "seed":
            return [vi(SEED, TensorProto.FLOAT, ["S", *tensor_dims(self.m.proto, self.m.logits)[1:]])]
        extra = vi(MASK, TensorProto.BOOL, ["T", "H", "W"]) if self.target == "segmentation" else \
            vi(ANCHOR, TensorProto.INT64, ["T"])
        return [vi(TARGET, TensorProto.INT64, ["T"]), extra]

    def _weights(self, clean: str) -> str:
        """The seed weights over the clean rows' output (N, ...), from the target's inputs (targets.py's weights_for)."""
        b = self.b
        shape = b.op("Shape", clean)
        if self.target == "seed":
            return b.op("Expand", SEED, shape)
        n = b.op("Shape", clean, end=1)
        category = b.op("Expand", TARGET, n)
        if self.target == "segmentation":
            classes = b.op("OneHot", category, b.op("Shape", clean, start=1, end=2), b.const([0.0, 1.0], dtype=np.float32),
                           axis=-1)
            mask = b.op("Cast", b.op("Expand", MASK, b.op("Concat", n, b.op("Shape", clean, start=2), axis=0)),
                        to=TensorProto.FLOAT)
            return b.op("Mul", b.op("Unsqueeze", classes, b.ints([2, 3])), b.op("Unsqueeze", mask, b.ints([1])))
        anchor = b.op("Expand", ANCHOR, n)
        dims = tensor_dims(self.m.proto, self.m.logits)
        v8 = not (isinstance(dims[1], int) and isinstance(dims[2], int) and dims[1] > dims[2])
        on = b.const([0.0, 1.0], dtype=np.float32)
        row = b.op("Add", category, b.const(4 if v8 else 5, dtype=np.int64))
        rows_axis, anchors_axis = (1, 2) if v8 else (2, 1)
        picked = b.op("OneHot", row, b.op("Shape", clean, start=rows_axis, end=rows_axis + 1), on, axis=-1)
        at = b.op("OneHot", anchor, b.op("Shape", clean, start=anchors_axis, end=anchors_axis + 1), on, axis=-1)
        if v8:
            return b.op("Mul", b.op("Unsqueeze", picked, b.ints([2])), b.op("Unsqueeze", at, b.ints([1])))
        return b.op("Mul", b.op("Unsqueeze", at, b.ints([2])), b.op("Unsqueeze", picked, b.ints([1])))

    def _seed(self, proto: onnx.ModelProto, logits: str, score: str) -> None:
        """grad_seed = one_hot(class of the image the row belongs to), the class chosen at the clean row; or the
        target's weights, repeated for every slot."""
        b = self.b
        seed_vi = next(i for i in proto.graph.input if i.name == GRAD_SEED)
        dtype = helper.tensor_dtype_to_np_dtype(seed_vi.type.tensor_type.elem_type)
        if self.target != "class":
            w = self._weights(self._clean(logits))
            if self.steps > 1:
                rank = len(tensor_dims(self.m.proto, self.m.logits))
                w = b.op("Tile", w, b.ints([self.steps, *[1] * (rank - 1)]))
            b.nodes.append(helper.make_node("Cast", [w], [GRAD_SEED], to=seed_vi.type.tensor_type.elem_type,
                                            name=GRAD_SEED))
            return
        target = b.op("Expand", TARGET, self.n)  # (1,) serves every image
        top1 = b.op("ArgMax", self._clean(logits), axis=-1, keepdims=0)
        chosen = b.op("Where", b.op("Less", target, b.const(0, dtype=np.int64)), top1, target)
        rows = b.op("Tile", chosen, b.ints([self.steps])) if self.steps > 1 else chosen
        self.class_rows = rows
        classes = b.op("Shape", score, start=-1)
        b.nodes.append(helper.make_node("OneHot", [rows, classes, b.const([0, 1], dtype=dtype)], [GRAD_SEED],
                                        axis=-1, name=GRAD_SEED))

    # -- per-slot tensors ------------------------------------------------------------------
    def _clean(self, t: str) -> str:
        """The rows of slot S − 1 (the unperturbed input) of a (S·N, ...) tensor."""
        if self.steps == 1:
            return t
        b = self.b
        start = b.op("Mul", b.ints([self.steps - 1]), self.n)
        return b.op("Slice", t, start, b.ints([np.iinfo(np.int64).max]), b.ints([0]))

    def _slots(self, t: str, grid: bool) -> Symbol:
        """A (S·N, ...) tensor as float32 (S, N, ...), layer tensors as grids (S, N, K, h, w)."""
        b = self.b
        t = self.ops.cast_float(t, self._layer_type() if grid else TensorProto.FLOAT)
        stacked = self.ops.node("Reshape", t.name, b.op("Concat", b.ints([self.steps, -1]),
                                                        b.op("Shape", t.name, start=1), axis=0))
        return self.ops.grid(stacked, self.layer) if grid else stacked

    def _layer_type(self) -> int:
        return next((v.type.tensor_type.elem_type for v in [*self.m.proto.graph.value_info, *self.m.proto.graph.output]
                     if self.layer is not None and v.name == self.layer.name), TensorProto.FLOAT)

    def _method(self, x: str, grads: str) -> dict[str, Symbol]:
        """The definition's contributions over the path slots, their sums, its reduction and the heatmap."""
        ops, d, p, layer = self.ops, self.d, self.path_rows, self.layer
        g = self._slots(grads, grid=layer is not None)
        a = self._slots(layer.name, grid=True) if layer is not None else None
        rank = 3 + layer.rank if layer is not None else len(self.m.input_shape) + 1  # (S, N, K, *space) or (S, x)
        weights = np.asarray(getattr(self.plan, "weights", None) if isinstance(self.plan, Path) else
                             np.full(p, 1 / p), np.float32).reshape(-1, *[1] * (rank - 1))
        one = self.steps == 1  # one slot: no slicing or summing over slots, only dropping their axis (no copies)
        if d.pairs:
            row = Row(g=g[1:p], w=weights[1:], a=a[1:p] if a is not None else None,
                      prev=Row(g=g[: p - 1], w=weights[:-1], a=a[: p - 1] if a is not None else None))
        else:
            row = Row(g=g if one else g[:p], w=weights, a=(a if one else a[:p]) if a is not None else None)
        contributions = d.contribution(ops, row, self.opts)
        sums = {name: self._first(t) if one else ops.sum(t, 0) for name, t in contributions.items()}
        small = self.uniform.get(layer.name) if one and layer is not None and layer.channels_first else None
        for name, t in contributions.items():
            if small is not None and t is row.g:  # G itself, the same at every position: its value per channel
                sums[name].uniform = ops.cast_float(small, self._layer_type())
        ctx = Context(x=Symbol(ops, x), image_axes=tuple(range(2 - rank, 0)))
        if self.base is not None:
            ctx.baseline = ops.lift(self.base)
        if layer is not None:
            ctx.a = self._first(a) if one else ops.node("Gather", a.name, self.b.const(self.steps - 1, dtype=np.int64),
                                                        axis=0)
            ctx.channels = layer.shape[1] if layer.channels_first else layer.shape[-1]
            ctx.grid = layer.grid
        result = d.finish(ops, sums, ctx, self.opts)["map"]
        if layer is not None:
            return {HEATMAP: cam_heatmap(ops, result, self.m.image_size), CAM: result}
        return {HEATMAP: normalize(ops, pixel_map(ops, result, self.m.channel_axis, d.reduce)), ATTRIBUTION: result}

    def _first(self, t) -> Symbol:
        """The only slot of a one-slot (1, N, ...) tensor (or a weight-scaled one), as (N, ...)."""
        return self.ops.node("Squeeze", self.ops.lift(t).name, self.b.ints([0]))

    def _output_info(self, name: str) -> onnx.ValueInfoProto:
        batch = _batch_dim(next(i for i in self.m.proto.graph.input if i.name == self.m.image_input))
        if name == HEATMAP:
            dims = [batch, *self.m.image_size]
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


def _finish(proto: onnx.ModelProto, m: Model, shapes: bool = True) -> onnx.ModelProto:
    """Fresh shape inference, the model's opset and the lowest IR version that opset allows."""
    del proto.graph.value_info[:]
    del proto.opset_import[:]
    proto.opset_import.extend(m.proto.opset_import)
    proto.ir_version = helper.find_min_ir_version_for(proto.opset_import)
    if not shapes:
        return proto
    try:
        return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # shapes are an aid to runtimes, not needed to run
        return proto
