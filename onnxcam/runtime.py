"""ONNX Runtime sessions: every session in onnxcam is made here, on providers that really work."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import threading
import warnings

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

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


def make_session(model: onnx.ModelProto | bytes, device: str = "auto", threads: int = 0) -> ort.InferenceSession:
    """No spinning: onnxcam alternates sessions (explainer, forward, metrics graphs), and a pool that busy-waits after
    its run slowed the next session's run by ~4 % on 2 cores, while one session's back-to-back runs gained nothing."""
    options = ort.SessionOptions()
    options.log_severity_level = log_severity()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    data = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        return ort.InferenceSession(data, options, providers=providers_for(device))
    except OnnxcamError:
        raise
    except Exception as e:
        raise OnnxcamError(f"ONNX Runtime cannot load the model: {ort_message(e)}") from None
