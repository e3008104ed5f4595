"""ONNX Runtime sessions: every session in onnxcam is made here, on providers that really work."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import math
import os
import re
import threading
import warnings

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from .errors import OnnxcamError

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
LOG_LEVELS = {"verbose": 0, "info": 1, "warning": 2, "error": 3, "fatal": 4}
_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_stderr():
    """Silence ORT's C++ error spam while probing providers whose libraries may be absent."""
    fd = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")  # ORT prints its fallback banner with print()
                yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def _probe_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@functools.cache
def provider_works(provider: str) -> bool:
    """True when a session on `provider` really loads (its shared libraries are present)."""
    if provider == "CPUExecutionProvider":
        return True
    if provider not in ort.get_available_providers():
        return False
    with _lock, _quiet_stderr():
        options = ort.SessionOptions()
        options.log_severity_level = 4
        try:
            session = ort.InferenceSession(_probe_model(), options, providers=[provider])
        except Exception:
            return False
        return provider in session.get_providers()


def working_providers() -> list[str]:
    return [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider") if provider_works(p)]


def providers_for(device: str) -> list[str]:
    """Providers to request: `auto` takes CUDA when it works (TensorRT only when asked)."""
    if device not in DEVICES:
        raise OnnxcamError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "auto":
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if provider_works(p)]
    wanted = _PROVIDER[device]
    if not provider_works(wanted):
        raise OnnxcamError(f"device {device!r} is not usable here ({wanted} does not load); use --device cpu or auto")
    chain = {"tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"], "cuda": ["CUDAExecutionProvider"]}
    return [*chain.get(device, []), "CPUExecutionProvider"]


def ort_message(e: Exception, limit: int = 300) -> str:
    """ORT's exception text on one line, without its status prefix and C++ source locations."""
    text = " ".join(str(e).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"/\S+\.(?:h|cc|cpp):\d+ [^()]*\([^()]*\) ", "", text)
    return text[:limit] or type(e).__name__


def log_severity() -> int:
    """ONNX Runtime's own messages stay off stderr (onnxcam folds them into its one-line errors) unless
    ONNXCAM_LOG names a level: verbose, info, warning, error (or ORT's severity number 0-3)."""
    value = os.environ.get("ONNXCAM_LOG", "").strip().lower()
    return LOG_LEVELS.get(value, int(value) if value in ("0", "1", "2", "3", "4") else 4)


class SharedWeights:
    """The model's weights handed to every session built from its graphs as in-memory external initializers, so that
    no session keeps a serialized copy of the model (the Python InferenceSession holds on to the bytes it was given);
    each allocates from ONNX Runtime's shared CPU arena. ONNX Runtime still makes its own optimized copy per session."""

    SHARED_ELEMENTS = 1024  # smaller initializers (shapes, axes, scalars) stay in the graph, where ORT folds them
    TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT8, TensorProto.UINT8,
             TensorProto.INT32, TensorProto.INT64}  # numpy's own types: OrtValue.ortvalue_from_numpy takes them

    def __init__(self, proto: onnx.ModelProto):
        self.arrays = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer
                       if math.prod(t.dims) > self.SHARED_ELEMENTS and t.data_type in self.TYPES
                       and t.data_location != TensorProto.EXTERNAL}
        self.values = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in self.arrays.items()}

    def strip(self, proto: onnx.ModelProto, options: ort.SessionOptions) -> onnx.ModelProto:
        """`proto` with the shared weights as external references, and `options` that hand them over. In place: the
        graph was built for this one session, and a copy would hold the weights once more while the session loads."""
        names = []
        for t in proto.graph.initializer:
            a = self.arrays.get(t.name)
            if a is None or tuple(t.dims) != a.shape or t.data_location == TensorProto.EXTERNAL:
                continue
            for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
                t.ClearField(field)
            t.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "onnxcam-shared-weights"), ("offset", "0"), ("length", str(a.nbytes))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            names.append(t.name)
        if names:
            options.add_external_initializers(names, [self.values[n] for n in names])
        _register_env_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
        return proto


@functools.cache
def _register_env_arena() -> None:
    """One CPU arena in ONNX Runtime's environment, for the sessions that ask for it (session.use_env_allocators)."""
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, None)


def release_heap() -> None:
    """Hand the heap pages that a model load or a graph build freed back to the OS: glibc keeps them otherwise, and
    the process would hold that one-off peak as resident memory for its lifetime. A no-op without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def tensorrt_options() -> dict:
    """TensorRT builds an engine per input shape, which takes minutes: ONNXCAM_TRT_CACHE=DIR keeps them on disk."""
    folder = os.environ.get("ONNXCAM_TRT_CACHE")
    return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": folder} if folder else {}


def make_session(model: onnx.ModelProto | bytes, device: str = "auto", threads: int = 0,
                 weights: SharedWeights | None = None, spin: bool = False) -> ort.InferenceSession:
    """No spinning by default: methods alternate sessions (explainer, forward, metrics graphs), and a pool that
    busy-waits after its run slows the next session's run. `spin` is for a session that runs alone, call after call
    (a one-row CAM): its threads then wake in time for the next image instead of sleeping. A graph handed over with
    `weights` loses them (SharedWeights.strip)."""
    options = ort.SessionOptions()
    options.log_severity_level = log_severity()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if threads:
        options.intra_op_num_threads = threads
    if weights is not None and not isinstance(model, bytes):
        model = weights.strip(model, options)
    data = model if isinstance(model, bytes) else model.SerializeToString()
    providers = [(p, tensorrt_options()) if p == "TensorrtExecutionProvider" else p for p in providers_for(device)]
    try:
        return ort.InferenceSession(data, options, providers=providers)
    except OnnxcamError:
        raise
    except Exception as e:
        raise OnnxcamError(f"ONNX Runtime cannot load the model: {ort_message(e)}") from None
