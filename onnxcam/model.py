"""Load an ONNX model and normalize it into the form every other module relies on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from .batch import make_dynamic
from .errors import ModelError

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
MIN_OPSET = 17  # the gradient rules emit opset-17 forms (ScatterElements reduction, axes inputs)
KNOWN_DOMAINS = {"", "ai.onnx"}
MAX_ELEMENTS = 1 << 34  # no image model has a tensor with 16 G elements: such a dim is hostile


@dataclass(frozen=True)
class Model:
    """A normalized model plus what onnxcam needs to know about its interface."""

    proto: onnx.ModelProto
    image_input: str
    input_shape: tuple  # dims as int, or str for symbolic ones
    layout: str  # "NCHW" or "NHWC"
    score_output: str
    logits: str  # pre-softmax tensor (== score_output when the graph has no final Softmax)
    source: str = "<memory>"

    @property
    def output_is_prob(self) -> bool:
        return self.logits != self.score_output

    @property
    def image_size(self) -> tuple[int | None, int | None]:
        h, w = self.input_shape[2:4] if self.layout == "NCHW" else self.input_shape[1:3]
        return (h if isinstance(h, int) else None, w if isinstance(w, int) else None)

    @property
    def channels(self) -> int | None:
        c = self.input_shape[1] if self.layout == "NCHW" else self.input_shape[3]
        return c if isinstance(c, int) else None

    @property
    def opset(self) -> int:
        return opset_version(self.proto)


def opset_version(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in KNOWN_DOMAINS), 0)


def load_model(source: str | os.PathLike | onnx.ModelProto | Model) -> Model:
    """Read, validate and normalize an image model; every error is a one-line ModelError."""
    if isinstance(source, Model):
        return source
    proto, name = read_model(source)
    image, shape, layout = _find_image_input(proto, name)
    score, logits = find_score_output(proto, name)
    return Model(proto, image, shape, layout, score, logits, name)


def read_model(source: str | os.PathLike | onnx.ModelProto | Model) -> tuple[onnx.ModelProto, str]:
    """Any ONNX graph, validated and normalized, with a name for error messages."""
    if isinstance(source, Model):
        return source.proto, source.source
    if isinstance(source, onnx.ModelProto):
        proto, name, folder = _copy(source), "<memory>", None
    else:
        proto, name, folder = _read(Path(source)), str(source), Path(source).resolve().parent
    _load_external(proto, folder, name)
    _check(proto, name)
    proto = normalize(proto)
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
        info = external_data_helper.ExternalDataInfo(t)
        target = (folder / info.location).resolve()
        if Path(info.location).is_absolute() or not target.is_relative_to(folder):
            raise ModelError(
                f"{name}: tensor {t.name!r} points to external data {info.location!r} outside the model's "
                "folder; refusing it (move the data file next to the model)"
            )
        if not target.is_file():
            raise ModelError(f"{name}: external data file {info.location!r} for tensor {t.name!r} is missing")
        size = target.stat().st_size
        if info.offset is not None and info.length is not None and info.offset + info.length > size:
            raise ModelError(f"{name}: external data for {t.name!r} lies beyond the end of {info.location!r}")
    try:
        external_data_helper.load_external_data_for_model(proto, str(folder))
    except Exception as e:
        raise ModelError(f"{name}: cannot read external data ({_first_line(e)})") from None


def _check(proto: onnx.ModelProto, name: str) -> None:
    for o in proto.opset_import:
        if o.domain not in KNOWN_DOMAINS:
            raise ModelError(
                f"{name}: uses custom-op domain {o.domain!r}, which onnxcam does not know; "
                "export the model with standard ONNX ops only"
            )
    for t in proto.graph.initializer:
        if int(np.prod(t.dims, dtype=np.float64)) > MAX_ELEMENTS:
            raise ModelError(f"{name}: initializer {t.name!r} has absurd dims {list(t.dims)}")
    proto.ir_version = helper.find_min_ir_version_for(proto.opset_import)  # what the installed ORT reads
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ModelError(f"{name}: invalid ONNX model ({_first_line(e)})") from None


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
    try:
        return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as e:
        raise ModelError(f"shape inference failed ({_first_line(e)})") from None


def _fold(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold with onnx-graphsurgeon until stable (legacy Swin exports carry ~6,000 shape nodes)."""
    import onnx_graphsurgeon as gs
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # graphsurgeon folds through ORT, which warns per node
    count = None
    for _ in range(4):
        graph = gs.import_onnx(_infer_shapes(proto))
        try:
            graph.fold_constants(fold_shapes=True, error_ok=True).cleanup()
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
        if len(graph.nodes) == count:
            break
        count = len(graph.nodes)
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
        if len(dims) == 4:
            return inp.name, dims, _layout(dims)
        if len(dims) == 3:
            raise ModelError(
                f"{name}: image input {inp.name!r} has no batch axis (shape {list(dims)}); "
                "re-export the model with a leading batch dimension"
            )
    raise ModelError(
        f"{name}: no float image input of rank 4 (N,C,H,W or N,H,W,C) found among inputs "
        f"{[i.name for i in proto.graph.input if i.name not in inits]}"
    )


def _layout(dims: tuple) -> str:
    def small(d):
        return isinstance(d, int) and d in (1, 3, 4)

    return "NHWC" if small(dims[3]) and not small(dims[1]) else "NCHW"


def find_score_output(proto: onnx.ModelProto, name: str) -> tuple[str, str]:
    for out in proto.graph.output:
        if out.type.tensor_type.elem_type in FLOAT_TYPES:
            producer = next((n for n in proto.graph.node if out.name in n.output), None)
            logits = producer.input[0] if producer is not None and producer.op_type == "Softmax" else out.name
            return out.name, logits
    raise ModelError(f"{name}: the model has no float output to explain")


def initializer_value(proto: onnx.ModelProto, tensor: str) -> np.ndarray | None:
    for t in proto.graph.initializer:
        if t.name == tensor:
            return numpy_helper.to_array(t)
    return None


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
