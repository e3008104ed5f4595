"""The installed ONNX Runtime: several distributions ship the same `onnxruntime` module and overwrite each other."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

RUNTIMES = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-qnn",
            "onnxruntime-rocm", "onnxruntime-training", "ort-nightly", "ort-nightly-gpu")


def check_single_runtime() -> None:
    """Refuse two runtimes side by side: the module is whichever installed last, often with half the other's files.

    From the `onnxcam` command the message is printed as one line (exit 1); from Python it is an ImportError."""
    installed = [name for name in RUNTIMES if _installed(name)]
    if len(installed) < 2:
        return
    message = (f"onnxcam: {' and '.join(installed)} are installed side by side and overwrite one another's "
               f"`onnxruntime` module; keep one: pip uninstall -y {' '.join(installed)} && "
               "pip install 'onnxcam[gpu]' (CUDA) or pip install --force-reinstall onnxcam (CPU)")
    if Path(sys.argv[0]).stem == "onnxcam":
        print(message, file=sys.stderr)
        raise SystemExit(1)
    raise ImportError(message)


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True
