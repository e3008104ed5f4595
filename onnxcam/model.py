"""Load an ONNX model and normalize it into the form every other module relies on."""

from __future__ import annotations

import dataclasses
import gc
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from .dynamic_batch import make_dynamic
from .errors import ModelError

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
MIN_OPSET = 17  # the gradient rules emit opset-17 forms (ScatterElements reduction, axes inputs)
KNOWN_DOMAINS = {"", "ai.onnx"}
STANDARD_DOMAINS = {*KNOWN_DOMAINS, "ai.onnx.ml"}  # tf2onnx and ORT's quantizer declare ai.onnx.ml without using it
RESHAPES = {"Flatten", "Reshape", "Squeeze", "Identity"}  # between a classifier's Softmax and its output
MAX_ELEMENTS = 1 << 34  # no image model has a tensor with 16 G elements: such a dim is hostile
MAX_TENSOR_ELEMENTS = 1 << 31  # graph inputs, outputs and value_info: 8 GB of float32 per tensor at most
INFER_ELEMENTS = 1024  # shape inference reads constants (shapes, axes, pads); bigger tensors are weights
FOLD_BYTES = 1 << 28  # constant folding leaves bigger tensors (Tile/Expand of constants) to run time
COLLECT_BYTES = 1 << 24  # a model this large is worth a garbage collection after folding (~0.2 s with torch loaded)
MAX_FILE_BYTES = 1 << 31  # protobuf cannot parse more; bigger models keep their weights in external data
_SUB_BYTE = {getattr(TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2", "FLOAT6E2M3", "FLOAT6E3M2")
             if hasattr(TensorProto, n)}


@dataclass(frozen=True)
class Model:
    """A normalized model plus what onnxcam needs to know about its interface."""

    proto: onnx.ModelProto
    image_input: str
    input_shape: tuple  # dims as int, or str for symbolic ones
    layout: str  # "NCHW"/"NHWC" for images; "NCL"/"NLC" for 1-D signals, "NCDHW"/"NDHWC" for volumes
    score_output: str
    logits: str  # pre-softmax tensor (== score_output when the graph has no final Softmax)
    source: str = "<memory>"

    @property
    def output_is_prob(self) -> bool:
        return self.logits != self.score_output

    @property
    def rank(self) -> int:
        """Spatial dims of one input: 1 (signals), 2 (images) or 3 (volumes)."""
        return len(self.input_shape) - 2

    @property
    def channel_axis(self) -> int:
        return channel_axis(self.layout)

    @property
    def image_size(self) -> tuple[int | None, ...]:
        """The input's spatial size, (H, W) for images, (L,) for signals, (D, H, W) for volumes; None where dynamic."""
        dims = self.input_shape[2:] if self.channel_axis == 1 else self.input_shape[1:-1]
        return tuple(d if isinstance(d, int) else None for d in dims)

    @property
    def channels(self) -> int | None:
        c = self.input_shape[self.channel_axis]
        return c if isinstance(c, int) else None

    @property
    def opset(self) -> int:
        return opset_version(self.proto)


def channel_axis(layout: str) -> int:
    """1 for channels-first layouts (NCL, NCHW, NCDHW), −1 for channels-last ones."""
    return 1 if layout[1] == "C" else -1


def opset_version(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in KNOWN_DOMAINS), 0)


def load_model(source: str | os.PathLike | onnx.ModelProto | Model, input_size: tuple[int, ...] | None = None,
               output: str | int | None = None) -> Model:
    """Read, validate and normalize a model of images, signals or volumes; every error is a one-line ModelError.

    `input_size` (H, W) fixes a dynamic height and width (any rank: one size per spatial axis, or one for all), so
    that shapes, and with them layers, are known. `output` names the tensor to explain (any shape: detections,
    segmentation maps); by default the first float output, which must then be class scores (N, classes); an int
    picks a graph output by position."""
    if isinstance(source, Model):
        return source if output is None else explained_output(source, output)
    proto, name = read_model(source, input_size)
    image, shape, layout = _find_image_input(proto, name)
    if output is not None:
        return explained_output(Model(proto, image, shape, layout, output, output, name), output)
    score, logits = find_score_output(proto, name)
    score, logits = (_as_matrix(proto, t, name) for t in (score, logits))
    return Model(proto, image, shape, layout, score, logits, name)


def explained_output(model: Model, output: str | int) -> Model:
    """The model explaining tensor `output` as it is (no softmax is looked for: targets weigh its raw values)."""
    g = model.proto.graph
    if isinstance(output, int):
        if not 0 <= output < len(g.output):
            raise ModelError(f"{model.source}: the model has {len(g.output)} output(s); output {output} is not one")
        output = g.output[output].name
    vi = next((v for v in [*g.output, *g.value_info] if v.name == output), None)
    if vi is None:
        names = [o.name for o in g.output]
        raise ModelError(f"{model.source}: the model has no tensor {output[:80]!r}; its outputs are "
                         f"{', '.join(names[:8])}")
    if vi.type.tensor_type.elem_type not in FLOAT_TYPES:
        raise ModelError(f"{model.source}: tensor {output[:80]!r} is not a float tensor; name one to explain")
    return dataclasses.replace(model, score_output=output, logits=output)


def read_model(source: str | os.PathLike | onnx.ModelProto | Model,
               input_size: tuple[int, ...] | None = None) -> tuple[onnx.ModelProto, str]:
    """Any ONNX graph, validated and normalized, with a name for error messages."""
    if isinstance(source, Model):
        return source.proto, source.source
    if isinstance(source, onnx.ModelProto):
        proto, name, folder = _copy(source), "<memory>", None
    else:
        proto, name, folder = _read(Path(source)), str(source), Path(source).resolve().parent
    _check_text(proto, name)
    _load_external(proto, folder, name)
    _tidy(proto)
    if input_size is not None:
        _fix_input_size(proto, input_size, name)
    _check(proto, name)
    _check_value_dims(_infer_shapes(proto), name)  # sizes that only inference knows (Expand, Tile, Resize...)
    proto = normalize(proto)
    _check_value_dims(proto, name)  # ... and those that folding reveals, before make_dynamic runs the model
    try:
        image = _find_image_input(proto, name)[0]
    except ModelError:
        return proto, name  # not an image model: gradient_model still works on it
    return make_dynamic(proto, image, _infer_shapes), name


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def _read(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise ModelError(f"model file not found: {path}; check the path")
    if path.is_dir():
        raise ModelError(f"{path} is a folder; pass the .onnx file inside it")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ModelError(f"{path} is larger than 2 GB, which protobuf cannot parse; save the weights as external data")
    data = path.read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception:
        raise ModelError(
            f"{path} is not an ONNX model (it does not parse as ModelProto; truncated or another format?)"
        ) from None
    if not proto.HasField("graph") or not proto.graph.node or not proto.opset_import:
        raise ModelError(f"{path} is not an ONNX model (no graph or no opset); truncated or another format?")
    return proto


def _load_external(proto: onnx.ModelProto, folder: Path | None, name: str) -> None:
    """Refuse external data outside the model's folder (a model file must not read /etc/passwd)."""
    tensors = [t for t in external_data_helper._get_all_tensors(proto) if external_data_helper.uses_external_data(t)]
    if not tensors:
        return
    if folder is None:
        raise ModelError("an in-memory model with external data cannot be resolved; load it from its file path")
    for t in tensors:
        try:
            info = external_data_helper.ExternalDataInfo(t)
        except ValueError as e:  # a negative or non-numeric offset or length
            raise ModelError(f"{name}: bad external data entry for tensor {t.name!r} ({_first_line(e)})") from None
        target = (folder / info.location).resolve()
        if Path(info.location).is_absolute() or not target.is_relative_to(folder):
            raise ModelError(
                f"{name}: tensor {t.name!r} points to external data {info.location!r} outside the model's "
                "folder; refusing it (move the data file next to the model)"
            )
        if not target.is_file():
            raise ModelError(f"{name}: external data file {info.location!r} for tensor {t.name!r} is missing")
        size = target.stat().st_size
        offset = info.offset or 0
        if offset > size or (info.length is not None and offset + info.length > size):
            raise ModelError(f"{name}: external data for {t.name!r} lies beyond the end of {info.location!r}")
        declared = _declared_bytes(t)
        available = size - offset if info.length is None else info.length
        if declared is not None and declared != available:  # checked before reading: the data file may be huge
            raise ModelError(
                f"{name}: tensor {t.name!r} declares dims {list(t.dims)} ({declared} bytes) but its external data "
                f"in {info.location!r} holds {available} bytes; the model is corrupt"
            )
    try:
        external_data_helper.load_external_data_for_model(proto, str(folder))
    except Exception as e:
        raise ModelError(f"{name}: cannot read external data ({_first_line(e)})") from None


def _check_text(proto: onnx.ModelProto, name: str) -> None:
    """Every string field is UTF-8 (protobuf hands invalid ones over as bytes, which onnx's helpers choke on), and so
    are string attributes (bytes fields that onnx, graphsurgeon and the gradient rules decode as UTF-8)."""
    stack = [proto]
    while stack:
        message = stack.pop()
        for field, value in message.ListFields():
            repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
            if field.type == field.TYPE_STRING or (message.DESCRIPTOR.name == "AttributeProto"
                                                   and field.name in ("s", "strings")):
                bad = next((v for v in (value if repeated else [value]) if not _is_utf8(v)), None)
                if bad is not None:
                    raise ModelError(f"{name}: {message.DESCRIPTOR.name}.{field.name} {bad[:40]!r} is not UTF-8 text; "
                                     "the file is corrupt")
            elif field.type == field.TYPE_MESSAGE:
                stack.extend(value if repeated else [value])


def _is_utf8(value: str | bytes) -> bool:
    if isinstance(value, str):
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _tidy(proto: onnx.ModelProto) -> None:
    """What exporters write that means something simpler: opset imports no node uses, initializers listed as graph
    inputs (IR 3: constants unless fed, and onnxcam never feeds them), and dim_value −1 for an unknown dim."""
    used = {n.domain for n in _all_nodes(proto.graph)} | KNOWN_DOMAINS
    kept = [o for o in proto.opset_import if o.domain in used]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    g = proto.graph
    constants = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in constants]
    del g.input[:]
    g.input.extend(inputs)
    for vi in [*g.input, *g.output, *g.value_info]:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value == -1:
                d.Clear()


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for a in node.attribute:
            for sub in [a.g] if a.HasField("g") else list(a.graphs):
                yield from _all_nodes(sub)


def _fix_input_size(proto: onnx.ModelProto, size: tuple[int, ...], name: str) -> None:
    image, _, layout = _find_image_input(proto, name)
    dims = next(i for i in proto.graph.input if i.name == image).type.tensor_type.shape.dim
    spatial = list(dims[2:] if channel_axis(layout) == 1 else dims[1:-1])
    if len(size) != len(spatial) and len(set(size)) == 1:  # one side for every axis (--size S)
        size = (size[0],) * len(spatial)
    if len(size) != len(spatial):
        raise ModelError(f"{name}: input size {tuple(size)} has {len(size)} dims; the model's input has "
                         f"{len(spatial)} spatial dims")
    for d, value in zip(spatial, size):
        if d.HasField("dim_value") and d.dim_value != value:
            raise ModelError(f"{name}: input size {tuple(size)} does not match the model's fixed "
                             f"{tuple(x.dim_value for x in spatial)}; leave the size out or use the model's")
        d.dim_value = int(value)


def _check(proto: onnx.ModelProto, name: str) -> None:
    for node in _all_nodes(proto.graph):
        if node.domain not in STANDARD_DOMAINS:
            raise ModelError(
                f"{name}: node {_label(node)} uses custom-op domain {node.domain!r}, which onnxcam does not know; "
                "export the model with standard ONNX ops only"
            )
    for t in proto.graph.initializer:
        if int(np.prod(t.dims, dtype=np.float64)) > MAX_ELEMENTS:
            raise ModelError(f"{name}: initializer {t.name!r} has absurd dims {list(t.dims)}")
    _check_tensor_data(proto, name)
    _check_value_dims(proto, name)
    _check_graph(proto, name)
    try:
        proto.ir_version = helper.find_min_ir_version_for(proto.opset_import)  # what the installed ORT reads
    except Exception as e:
        raise ModelError(f"{name}: unsupported opset {_opsets(proto)} ({_first_line(e)})") from None
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ModelError(f"{name}: invalid ONNX model ({_one_line(e)})") from None


def _opsets(proto: onnx.ModelProto) -> str:
    return ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in proto.opset_import)


def _declared_bytes(t: onnx.TensorProto) -> int | None:
    """Bytes that a tensor's dims and data type need as raw data (None for strings and sub-byte types)."""
    if t.data_type in (TensorProto.STRING, TensorProto.UNDEFINED) or any(d < 0 for d in t.dims):
        return None
    try:
        itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except Exception:  # an unknown data type: onnx.checker names it
        return None
    if t.data_type in _SUB_BYTE:
        return None  # packed, several elements per byte
    return math.prod(t.dims) * itemsize


def _check_tensor_data(proto: onnx.ModelProto, name: str) -> None:
    """Every stored tensor (initializers, Constant values) holds exactly what its dims declare."""
    for t in external_data_helper._get_all_tensors(proto):
        if any(d < 0 for d in t.dims):
            raise ModelError(f"{name}: tensor {t.name!r} has negative dims {list(t.dims)}")
        declared = _declared_bytes(t)
        if declared is None or t.data_location == TensorProto.EXTERNAL:
            continue
        if t.HasField("raw_data"):
            held, unit = len(t.raw_data), "bytes"
        else:
            field = helper.tensor_dtype_to_field(t.data_type)
            per = 2 if t.data_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128) else 1
            declared //= helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            declared *= per
            held, unit = len(getattr(t, field)), f"values in {field}"
        if held != declared:
            raise ModelError(
                f"{name}: tensor {t.name!r} declares dims {list(t.dims)} ({declared} {unit}) but holds {held}; "
                "the model is corrupt or hostile"
            )


def _check_value_dims(proto: onnx.ModelProto, name: str) -> None:
    """Graph inputs, outputs and value_info: no negative dims, no tensor beyond MAX_TENSOR_ELEMENTS."""
    g = proto.graph
    for vi in [*g.input, *g.output, *g.value_info]:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
        if any(d < 0 for d in dims):
            raise ModelError(f"{name}: tensor {vi.name!r} has a negative dim {_shape(vi)}")
        if math.prod(dims) > MAX_TENSOR_ELEMENTS:
            raise ModelError(
                f"{name}: tensor {vi.name!r} has absurd shape {_shape(vi)} (over {MAX_TENSOR_ELEMENTS} elements)"
            )


def tensor_dims(proto: onnx.ModelProto, name: str) -> tuple | None:
    """A tensor's inferred dims (ints, or the names of symbolic ones), None when shape inference left it unknown."""
    for vi in [*proto.graph.value_info, *proto.graph.output, *proto.graph.input]:
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            return tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim)
    return None


def _shape(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in vi.type.tensor_type.shape.dim]


def _check_graph(proto: onnx.ModelProto, name: str) -> None:
    """Names produced once, no dangling inputs or outputs, no cycles (onnx.checker's message names no node)."""
    g = proto.graph
    given = {i.name for i in g.input} | {t.name for t in g.initializer} | {t.values.name for t in g.sparse_initializer}
    producer: dict[str, onnx.NodeProto] = {}
    for node in g.node:
        for out in filter(None, node.output):
            if out in producer or out in given:
                raise ModelError(f"{name}: tensor {out!r} is produced twice (by node {_label(node)} and "
                                 f"{_label(producer[out]) if out in producer else 'a graph input or initializer'})")
            producer[out] = node
    for node in g.node:
        for inp in node.input:
            if inp and inp not in given and inp not in producer:
                raise ModelError(f"{name}: node {_label(node)} reads {inp!r}, which no node, graph input or "
                                 "initializer produces (a dangling name)")
    for out in g.output:
        if out.name not in given and out.name not in producer:
            raise ModelError(f"{name}: graph output {out.name!r} is produced by no node (a dangling name)")
    loop = _cycle(g.node, producer)
    if loop:
        raise ModelError(f"{name}: the graph has a cycle: {' -> '.join(_label(n) for n in loop)}")


def _cycle(nodes, producer: dict) -> list:
    """Nodes on one cycle, or [] for an acyclic graph (Kahn's algorithm, then a walk among what is left)."""
    preds = [{id(producer[i]) for i in n.input if i in producer} for n in nodes]
    by_id = {id(n): k for k, n in enumerate(nodes)}
    users: list[list[int]] = [[] for _ in nodes]
    for k, ps in enumerate(preds):
        for p in ps:
            users[by_id[p]].append(k)
    missing = [len(ps) for ps in preds]
    ready = [k for k, m in enumerate(missing) if m == 0]
    while ready:
        k = ready.pop()
        for u in users[k]:
            missing[u] -= 1
            if missing[u] == 0:
                ready.append(u)
    left = {k for k, m in enumerate(missing) if m > 0}
    if not left:
        return []
    k, seen = min(left), {}
    while k not in seen:  # every node left has a predecessor left: walking back must close a loop
        seen[k] = len(seen)
        k = next(by_id[p] for p in preds[k] if by_id[p] in left)
    walk = list(seen)[seen[k]:]
    return [nodes[j] for j in reversed(walk)] + [nodes[walk[-1]]]


def _label(node: onnx.NodeProto) -> str:
    return f"{node.name!r} ({node.op_type})" if node.name else f"{node.op_type} (output {(node.output or ['?'])[0]!r})"


def normalize(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Raise the opset to MIN_OPSET, fold constants, drop Identity chains and infer shapes."""
    if opset_version(proto) < MIN_OPSET:
        try:
            proto = onnx.version_converter.convert_version(proto, MIN_OPSET)
        except Exception as e:
            raise ModelError(f"cannot convert the model to opset {MIN_OPSET} ({_first_line(e)})") from None
    proto = _infer_shapes(_fold(proto))
    proto.ir_version = helper.find_min_ir_version_for(proto.opset_import)
    return proto


def _infer_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Infer on a copy whose weights are bytes-free inputs: serializing 100 MB per call dominated load time."""
    light = onnx.ModelProto()
    light.CopyFrom(proto)
    g = light.graph
    heavy = [t for t in g.initializer if math.prod(t.dims) > INFER_ELEMENTS]
    if heavy:
        keep = [t for t in g.initializer if math.prod(t.dims) <= INFER_ELEMENTS]
        inputs = {i.name for i in g.input}
        g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in heavy if t.name not in inputs)
        g.ClearField("initializer")
        g.initializer.extend(keep)
    try:
        out = onnx.shape_inference.infer_shapes(light, data_prop=True)
    except Exception as e:
        raise ModelError(f"shape inference failed ({_first_line(e)})") from None
    if heavy:
        del out.graph.input[:]
        out.graph.input.extend(proto.graph.input)
        out.graph.ClearField("initializer")
        out.graph.initializer.extend(proto.graph.initializer)
    return out


def _fold(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold with onnx-graphsurgeon until stable (legacy Swin exports carry ~6,000 shape nodes)."""
    import onnx_graphsurgeon as gs
    import onnxruntime

    from .runtime import log_severity

    onnxruntime.set_default_logger_severity(log_severity())  # graphsurgeon folds through ORT, which warns per node
    # graphsurgeon's own warnings (nodes sharing a name, ops it cannot fold) go to stdout, where they would break
    # `layers --json`: shown only when ONNXCAM_LOG asks for warnings
    gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.WARNING if log_severity() <= 2 else gs.logger.G_LOGGER.CRITICAL + 1
    count = None
    # each round folds one more level of shape arithmetic that depends on the previous level's shapes:
    # legacy ShuffleNetV2 (a Shape/Gather/Div chain per channel shuffle) needs 8 rounds, legacy Swin 5
    for _ in range(16):
        graph = gs.import_onnx(_infer_shapes(proto))
        try:
            graph.fold_constants(fold_shapes=True, error_ok=True, size_threshold=FOLD_BYTES).cleanup()
        except Exception:  # folding is an optimization; an unfoldable graph still works
            pass
        _drop_identities(graph)
        graph.toposort()
        out = gs.export_onnx(graph, do_type_check=False)
        out.ir_version = proto.ir_version
        del out.opset_import[:]
        out.opset_import.extend(proto.opset_import)
        for field in ("producer_name", "producer_version", "doc_string"):
            setattr(out, field, getattr(proto, field))
        out.metadata_props.extend(proto.metadata_props)
        proto = out
        done, count = len(graph.nodes) == count, len(graph.nodes)
        if done:
            break
    del graph
    if proto.ByteSize() > COLLECT_BYTES:
        gc.collect()  # graphsurgeon's nodes and tensors refer to each other: its graphs' weights go only with a collection
    return proto


def _drop_identities(graph) -> None:
    """Rewire consumers of Identity/Dropout past them, so layer names are the real producers."""
    outputs = {t.name for t in graph.outputs}
    for node in list(graph.nodes):
        if node.op not in ("Identity", "Dropout") or any(o.outputs for o in node.outputs[1:]):
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if dst.name in outputs:
            continue
        for consumer in list(dst.outputs):
            for i, t in enumerate(consumer.inputs):
                if t is dst:
                    consumer.inputs[i] = src
        node.outputs.clear()
    graph.cleanup()


def _find_image_input(proto: onnx.ModelProto, name: str) -> tuple[str, tuple, str]:
    inits = {t.name for t in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        if tt.elem_type not in FLOAT_TYPES or not tt.HasField("shape"):
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim)
        if len(dims) == 3 and _small(dims[0]) and isinstance(dims[1], int) and dims[1] == dims[2] and dims[1] > 4:
            raise ModelError(
                f"{name}: image input {inp.name!r} has no batch axis (shape {list(dims)}); "
                "re-export the model with a leading batch dimension"
            )
        if len(dims) in LAYOUTS:
            return inp.name, dims, _layout(dims)
    raise ModelError(
        f"{name}: no float input of rank 3, 4 or 5 (a batch of signals N,C,L, images N,C,H,W or volumes N,C,D,H,W, "
        f"or their channels-last forms) found among inputs {[i.name for i in proto.graph.input if i.name not in inits]}"
    )


LAYOUTS = {3: ("NCL", "NLC"), 4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}  # (channels first, channels last)


def _small(d) -> bool:
    return isinstance(d, int) and d in (1, 3, 4)


def _layout(dims: tuple) -> str:
    """Channels last when the last axis looks like channels (1, 3, 4) and the second does not."""
    first, last = LAYOUTS[len(dims)]
    return last if _small(dims[-1]) and not _small(dims[1]) else first


def find_score_output(proto: onnx.ModelProto, name: str) -> tuple[str, str]:
    """(the first float output, its pre-softmax tensor): a final Softmax is found through Flatten/Reshape/Squeeze."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    for out in proto.graph.output:
        if out.type.tensor_type.elem_type in FLOAT_TYPES:
            t = out.name
            while t in producers and producers[t].op_type in RESHAPES:
                t = producers[t].input[0]
            is_prob = t in producers and producers[t].op_type == "Softmax"
            return out.name, producers[t].input[0] if is_prob else out.name
    raise ModelError(f"{name}: the model has no float output to explain")


def _as_matrix(proto: onnx.ModelProto, tensor: str, name: str) -> str:
    """A class-score tensor as (N, classes): Caffe-style (N, C, 1, 1) heads get a Flatten; other shapes are refused."""
    vi = next((v for v in [*proto.graph.value_info, *proto.graph.output] if v.name == tensor), None)
    if vi is None or not vi.type.tensor_type.HasField("shape"):
        return tensor  # rank unknown: the engine checks the scores it gets
    shape = _shape(vi)
    if len(shape) == 2:
        return tensor
    if len(shape) > 2 and all(d == 1 for d in shape[2:]):
        flat = f"{tensor}_onnxcam_2d"
        producer = next((n for n in proto.graph.node if flat in n.output), None)
        if producer is None:
            proto.graph.node.append(helper.make_node("Flatten", [tensor], [flat], axis=1, name=flat))
            proto.graph.value_info.append(helper.make_tensor_value_info(flat, vi.type.tensor_type.elem_type, shape[:2]))
        elif producer.name != flat or list(producer.input) != [tensor]:  # the model's own tensor of that name
            raise ModelError(f"{name}: the model has a tensor named {flat!r}, the name onnxcam gives its flattened "
                             "class scores; rename it")
        return flat
    raise ModelError(
        f"{name}: output {tensor!r} has shape {shape}, not (N, classes), so it is not class scores. For a detector or "
        "a segmenter, name the output to explain (output=, --output) and a target (onnxcam.targets.Detection, "
        "Segmentation or Seed; --task detect|segment)"
    )


def initializer_value(proto: onnx.ModelProto, tensor: str) -> np.ndarray | None:
    for t in proto.graph.initializer:
        if t.name == tensor:
            return numpy_helper.to_array(t)
    return None


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _one_line(e: Exception) -> str:
    """The whole message on one line (onnx.checker puts the node it blames on the lines after the first)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:400]
