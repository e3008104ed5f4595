"""Triton model repository entries for exported explainer models.

Tensor names come from the model file, so the config is written as protobuf text with every string escaped;
names that Triton's C API cannot carry (empty, NUL) are refused, and the model name, which is a folder and
a URL path segment, is kept to a safe alphabet."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
from google.protobuf.text_encoding import CEscape
from onnx import TensorProto

from .errors import OnnxcamError
from .image import write_atomic
from .surgery import TARGET

_TYPES = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.FLOAT16: "TYPE_FP16", TensorProto.DOUBLE: "TYPE_FP64",
          TensorProto.INT64: "TYPE_INT64", TensorProto.INT32: "TYPE_INT32", TensorProto.UINT8: "TYPE_UINT8",
          TensorProto.INT8: "TYPE_INT8", TensorProto.BOOL: "TYPE_BOOL"}
MAX_NAME = 1024
_MODEL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")


def triton_entry(proto: onnx.ModelProto, folder, name: str, max_batch_size: int = 8) -> Path:
    """DIR/<name>/config.pbtxt + DIR/<name>/1/model.onnx for Triton's onnxruntime backend, with dynamic batching.

    Triton's onnxruntime backend refuses optional inputs on batching models and does not count inputs that
    have a default, so the Triton copy takes `target` as a required (N,) input: send −1 for top-1."""
    if not _MODEL_NAME.fullmatch(name):
        raise OnnxcamError(f"invalid Triton model name {name[:60]!r}: use 1 to 255 letters, digits, '_', '-' or '.' "
                           "(not first); it names a folder and a URL")
    if not 1 <= max_batch_size <= 1 << 16:
        raise OnnxcamError(f"max_batch_size must be in 1..65536; got {max_batch_size}")
    served = onnx.ModelProto()
    served.CopyFrom(proto)
    g = served.graph
    inits = [t for t in g.initializer if t.name != TARGET]
    del g.initializer[:]
    g.initializer.extend(inits)
    inputs = [i for i in g.input if i.name not in {t.name for t in inits}]
    config = "\n".join([
        f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch_size}",
        "input [", ",\n".join(_io(vi, reshape=vi.name == TARGET) for vi in inputs), "]",
        "output [", ",\n".join(_io(vi) for vi in g.output), "]",
        "dynamic_batching { }", "",
    ])
    entry = Path(folder) / name
    (entry / "1").mkdir(parents=True, exist_ok=True)
    write_atomic(entry / "1" / "model.onnx", served.SerializeToString())
    write_atomic(entry / "config.pbtxt", config.encode())
    return entry


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME or "\0" in name:
        raise OnnxcamError(f"Triton cannot take the tensor name {name[:60]!r}: it must be 1 to {MAX_NAME} characters "
                           "without NUL; rename the tensor in the model")


def _io(vi: onnx.ValueInfoProto, reshape: bool = False) -> str:
    _check_name(vi.name)
    tt = vi.type.tensor_type
    kind = _TYPES.get(tt.elem_type)
    if kind is None:
        raise OnnxcamError(f"tensor {vi.name!r} has a data type Triton's onnxruntime backend does not take")
    name = CEscape(vi.name, as_utf8=True)
    if reshape:  # a per-image scalar: [batch] in the model, [batch, 1] on the wire
        return f'  {{ name: "{name}" data_type: {kind} dims: [ 1 ] reshape: {{ shape: [ ] }} }}'
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim[1:]]
    return f'  {{ name: "{name}" data_type: {kind} dims: [ {", ".join(str(d) for d in dims)} ] }}'
