"""Run explainer graphs in ONNX Runtime: one cached session per graph variant, rows streamed in chunks.

The runner knows graphs and rows, not methods: onnxcam.methods runs on top of it, onnxcam.Explainer above both."""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from .autodiff.builder import GRAD_SEED
from .errors import OnnxcamError, UsageError
from .model import Model, load_model, tensor_dims
from .runtime import SharedWeights, make_session, ort_message, providers_for, release_heap
from .surgery import LOGITS, TARGET, explainer_graph, forward_graph

DEFAULT_BATCH = 16  # rows per run: memory grows with this, not with steps × images
MAX_BATCH = 4096
ORT_ERRORS = (RuntimeError, ValueError, *(getattr(_ort_state, n) for n in (
    "Fail", "InvalidArgument", "RuntimeException", "InvalidGraph", "NotImplemented", "EPFail") if hasattr(_ort_state, n)))


@dataclass
class Weights:
    """Seed weights per image over the explained output, (N, ...): image i's score is Σ w_i · y_i. `labels` is the
    category each image's target names (−1 for none)."""

    w: np.ndarray
    labels: np.ndarray

    def rows(self, per_image: int) -> RowWeights:
        return RowWeights(self.w, per_image)


@dataclass
class RowWeights:
    """The weights of row r = image · per_image + k, looked up when a chunk is fed (never repeated in memory)."""

    w: np.ndarray
    per_image: int

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.w[np.asarray(rows) // self.per_image]


def batch_rows(value: int | None) -> int:
    """Rows per ONNX Runtime run: the given count, checked, or the default."""
    if value is None:
        return DEFAULT_BATCH
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_BATCH:
        raise UsageError(f"batch_size must be an integer in 1..{MAX_BATCH}; got {value!r}")
    return int(value)


@dataclass
class Chunk:
    """One run's worth of rows: their indices, the input fed, the logits and the named outputs."""

    rows: np.ndarray
    feed: np.ndarray
    logits: np.ndarray
    outputs: dict[str, np.ndarray]


class Session:
    """An ONNX Runtime session over one explainer graph; `static_batch` > 0 when the model's batch cannot vary."""

    def __init__(self, proto: onnx.ModelProto, device: str, inputs: str, threads: int = 0,
                 weights: SharedWeights | None = None, spin: bool = False):
        self.session = make_session(proto, device, threads, weights, spin)
        self.pad = device == "tensorrt"  # one batch shape: TensorRT builds an engine for every new one
        self.input = inputs
        image = next(i for i in self.session.get_inputs() if i.name == inputs)
        dim = image.shape[0]
        self.static_batch = dim if isinstance(dim, int) else 0
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.takes_target = TARGET in inputs
        self.seed_dtype = (np.float16 if inputs[GRAD_SEED].type == "tensor(float16)" else np.float32) \
            if GRAD_SEED in inputs else None
        self.dtype = np.float16 if image.type == "tensor(float16)" else np.float32

    def stream(self, make_rows, n_rows: int, targets, batch_size: int, outputs: list[str],
               extra: Callable[[np.ndarray, int], dict] | None = None) -> Iterator[Chunk]:
        """Run rows [0, n_rows) in chunks; make_rows(indices) builds the input rows of a chunk lazily. `targets` per
        row: class indices (−1 = top-1), or RowWeights for graphs that take the seed weights as an input.
        extra(indices, rows fed) → further feeds of a chunk (more rows are fed than indexed when a batch is padded)."""
        step = self.static_batch or batch_size
        for start in range(0, n_rows, step):
            rows = np.arange(start, min(start + step, n_rows))
            feed = np.ascontiguousarray(make_rows(rows), dtype=np.float32)
            padded = rows
            image = feed.astype(self.dtype, copy=False)
            if (self.static_batch or self.pad) and len(rows) < step:  # a fixed batch (model or TensorRT): pad the last
                padded = np.concatenate([rows, np.repeat(rows[-1:], step - len(rows))])
                image = image[np.searchsorted(rows, padded)]
            feeds = {self.input: image}
            if self.takes_target:
                feeds[TARGET] = targets[padded].astype(np.int64)
            elif self.seed_dtype is not None:
                feeds[GRAD_SEED] = targets[padded].astype(self.seed_dtype)
            if extra is not None:
                feeds.update(extra(rows, len(padded)))
            try:
                result = self.session.run([LOGITS, *outputs], feeds)
            except ORT_ERRORS as e:  # a model that loads but cannot run (a hostile Reshape, a bad attribute)
                raise OnnxcamError(f"ONNX Runtime failed running the model: {ort_message(e)}") from None
            if result[0].ndim == 0 or len(result[0]) != len(image):  # a Slice or Gather on the batch axis
                raise OnnxcamError(f"the model returned {len(result[0]) if result[0].ndim else 'no'} rows of scores for "
                                   f"{len(image)} input rows; onnxcam needs one row of class scores per image")
            result = [_wide(r[: len(rows)]) for r in result]
            if not np.isfinite(result[0]).all():
                raise OnnxcamError("the model's scores are NaN or infinite for this input; check the preprocessing")
            classes = result[0].shape[-1] if result[0].ndim else 0
            if self.takes_target and (targets[rows] >= classes).any():  # models whose class count shape inference could not tell
                raise OnnxcamError(f"target {int(targets[rows].max())} out of range: the model has {classes} classes "
                                   f"(0..{classes - 1})")
            yield Chunk(rows, feed, result[0], dict(zip(outputs, result[1:])))


class Runner:
    """One model's sessions, built on first use from one copy of the weights, and shared by threads."""

    def __init__(self, model, device: str = "auto", input_size: tuple[int, ...] | None = None, threads: int = 0,
                 output: str | None = None):
        """`threads`: ONNX Runtime's intra-op threads per session (0: one per core); workers sharing a machine set 1.
        `output`: the tensor to explain (default: the class scores)."""
        self.model: Model = load_model(model, input_size, output)
        release_heap()
        self.device = device
        self.threads = threads
        self._sessions: dict = {}  # graph variant → Session (None: no graph); "forward" → (exposed, Session)
        self.on_cpu = providers_for(device)[0] == "CPUExecutionProvider"  # the gradient forms suit the provider
        self.sum_in_graph = True  # path rows summed in the graph: their A and G stay in ORT (on a GPU, on the device)
        self._weights: SharedWeights | None = None  # handed to every session, made with the first
        self._lock = threading.Lock()

    def session(self, wrt: tuple[str, ...], score: str, expose: tuple[str, ...] = (), tail: str | None = None,
                seeded: bool = False) -> Session:
        """The cached session for ∂score/∂wrt (forward only when wrt is empty); `tail` cuts the network at that layer
        (activation-space paths); `seeded` graphs take the seed weights as an input instead of a class."""
        if not wrt and tail is None:
            return self._forward(expose)
        key = (wrt, score, expose, tail, seeded)
        with self._lock:
            if key not in self._sessions:
                model = self.model if tail is None else _tail_model(self.model, tail)
                self._sessions[key] = self._build(
                    lambda: explainer_graph(model, list(wrt), score, expose, seeded, cpu=self.on_cpu) if wrt
                    else forward_graph(model, expose), model.image_input)
            return self._sessions[key]

    def _forward(self, expose: tuple[str, ...]) -> Session:
        """One forward session for every method (each would hold its own optimized weights), exposing every tensor
        asked of it so far: a request for another tensor replaces it by one that exposes the union."""
        with self._lock:
            exposed, session = self._sessions.get("forward") or ((), None)
            if session is None or not set(expose) <= set(exposed):
                exposed = tuple(dict.fromkeys([*exposed, *expose]))
                session = self._build(lambda: forward_graph(self.model, exposed), self.model.image_input)
                self._sessions["forward"] = (exposed, session)
            return session

    def graph_session(self, key: tuple, build) -> Session | None:
        """The cached session of a graph that build() makes from the model (None when it makes none): graphs that
        compute a method's maps whole, or sum its rows; their threads spin between runs, as such a graph runs alone."""
        key = ("graph", *key)
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = self._build(build, self.model.image_input, spin=True)
            return self._sessions[key]

    def _build(self, graph, image: str, spin: bool = False) -> Session | None:
        """A session of the graph that graph() makes (None when it makes none). The graph and the copies made while
        building it are dropped before the heap is handed back, so the process does not keep the build's peak."""
        proto = graph()
        session = None if proto is None else Session(proto, self.device, image, self.threads, self._shared(), spin)
        del proto
        release_heap()
        return session

    def _shared(self) -> SharedWeights:
        """The weights every session is handed, made with the first (under the lock)."""
        if self._weights is None:
            self._weights = SharedWeights(self.model.proto)
        return self._weights

    def check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        expected = self.model.input_shape
        if x.ndim == len(expected) - 1:
            x = x[None]
        wanted = ", ".join(str(d) for d in expected)
        if x.ndim != len(expected) or any(isinstance(e, int) and e != a for e, a in zip(expected[1:], x.shape[1:])):
            raise OnnxcamError(
                f"input has shape {tuple(x.shape)} but the model expects ({wanted}) in {self.model.layout} layout; "
                "resize the images and check the channel order"
            )
        if x.dtype.kind != "f":
            raise OnnxcamError(f"input dtype is {x.dtype}; pass float32 images, already preprocessed")
        if not all_finite(x):
            raise OnnxcamError("input contains NaN or infinite values")
        return x.astype(np.float32, copy=False)

    def targets(self, target, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray | Weights:
        """Class indices per image (−1: top-1) for None, ints and Class targets; seed Weights for the targets that
        weigh the output (one for all images, or one per image), computed from the output at x."""
        from .targets import WEIGHTED, Class

        n = len(x)
        many = isinstance(target, (list, tuple)) and len(target) > 0
        items = list(target) if many else [target]
        if any(isinstance(t, WEIGHTED) for t in items):
            if not all(isinstance(t, WEIGHTED) for t in items) or len(items) not in (1, n):
                raise UsageError(f"targets must be one Segmentation, Detection or Seed for all images or {n} of them")
            y = self.outputs_at(x, batch_size)
            items = items * n if len(items) == 1 else items
            w = np.stack([t.weights_for(y[i]) for i, t in enumerate(items)])
            return Weights(w, np.array([t.category for t in items], np.int64))
        if any(isinstance(t, Class) for t in items):
            target = [t.category if isinstance(t, Class) else t for t in items] if many else items[0].category
        if target is None:
            return np.full(n, -1, np.int64)
        self.refuse_classes()
        t = np.atleast_1d(np.asarray(target))
        if t.dtype.kind not in "iu" or t.ndim != 1 or len(t) not in (1, n):
            raise OnnxcamError(f"target must be None, an int or {n} ints (one per image); got {target!r}")
        classes = self.num_classes
        if (t < 0).any() or (classes and (t >= classes).any()):
            raise OnnxcamError(f"target {t.tolist()} out of range: classes are 0..{classes - 1}")
        return np.broadcast_to(t, (n,)).astype(np.int64)

    def refuse_classes(self) -> None:
        """Class targets need class scores: any other output is explained through a target that weighs it."""
        shape = self.output_shape
        if shape is not None and len(shape) != 2:
            raise UsageError(f"output {self.model.logits[:80]!r} has shape {list(shape)}, not (N, classes): explain it "
                             "with a Segmentation, Detection or Seed target (onnxcam.targets)")

    def outputs_at(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """The explained output for images x, by forward rows."""
        session = self.session((), "logit")
        return np.concatenate([c.logits for c in session.stream(lambda r: x[r], len(x), None, batch_size, [])])

    @functools.cached_property
    def output_shape(self) -> tuple | None:
        """The explained output's inferred dims (ints, or names of symbolic ones), None when unknown."""
        return tensor_dims(self.model.proto, self.model.logits)

    @property
    def num_classes(self) -> int | None:
        shape = self.output_shape
        return shape[-1] if shape and isinstance(shape[-1], int) and shape[-1] > 0 else None


def all_finite(x: np.ndarray) -> bool:
    """A finite sum means finite elements (a NaN or an infinity would carry into it); only a sum that overflows
    needs the element-wise test. Unlike isfinite(x).all(), no mask as large as x is allocated."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(x.sum())) or bool(np.isfinite(x).all())


def _wide(a: np.ndarray) -> np.ndarray:
    """fp16/bf16 results in float32: the methods' sums and products keep their precision."""
    return a.astype(np.float32) if a.dtype.kind == "f" and a.dtype.itemsize < 4 else a


def _tail_model(model: Model, layer: str) -> Model:
    """The part of the network after `layer`, with the layer as its input (for activation-space paths)."""
    extracted = onnx.utils.Extractor(model.proto).extract_model([layer], [model.score_output])
    _batch_from_layer(extracted, model, layer)
    known = {layer} | {t.name for t in extracted.graph.initializer} | {o for n in extracted.graph.node for o in n.output}
    foreign = sorted({i for n in extracted.graph.node for i in n.input if i and i not in known})
    foreign += [i.name for i in extracted.graph.input if i.name != layer]
    if foreign:
        raise OnnxcamError(
            f"layer {layer!r} does not separate the network (the rest also reads {foreign[:3]}); "
            "use path='input' or a layer every path to the output goes through"
        )
    extracted.ir_version = model.proto.ir_version
    del extracted.opset_import[:]
    extracted.opset_import.extend(model.proto.opset_import)
    shape = tuple(d.dim_value or d.dim_param for d in extracted.graph.input[0].type.tensor_type.shape.dim)
    return dataclasses.replace(model, proto=extracted, image_input=layer, input_shape=shape)


def _batch_from_layer(proto: onnx.ModelProto, model: Model, layer: str) -> None:
    """A flatten written as Reshape(x, [Shape(input)[0], −1]) reads the image's shape, which the tail does not have:
    Shape(input) becomes [Shape(layer)[0], C, H, W] (the rows of the layer are the rows of the input)."""
    dims = model.input_shape[1:]
    if not all(isinstance(d, int) for d in dims):
        return
    g = proto.graph
    for k, node in enumerate(g.node):
        if node.op_type != "Shape" or list(node.input) != [model.image_input] or node.attribute:
            continue
        rest, batch = f"{node.output[0]}_onnxcam_rest", f"{node.output[0]}_onnxcam_batch"
        g.initializer.append(onnx.numpy_helper.from_array(np.array(dims, np.int64), rest))
        g.node[k].CopyFrom(onnx.helper.make_node("Concat", [batch, rest], list(node.output), axis=0, name=node.name))
        g.node.insert(k, onnx.helper.make_node("Shape", [layer], [batch], end=1))
