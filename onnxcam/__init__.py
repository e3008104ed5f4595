"""onnxcam: gradient-based explanations of ONNX image models with ONNX Runtime only."""

import os

# read by OpenCV once, when it loads: refuse images over 134 M pixels (a small PNG can declare gigapixels)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 27))

from .autodiff import grad_name, gradient_model
from .errors import LayerError, ModelError, OnnxcamError, UnsupportedOpError
from .model import Model, load_model

__version__ = "0.1.0"
__all__ = [
    "LayerError", "Model", "ModelError", "OnnxcamError", "UnsupportedOpError",
    "grad_name", "gradient_model", "load_model",
]

from .engine import Explainer, Explanation  # noqa: E402

__all__ += ["Explainer", "Explanation"]

from .export import export  # noqa: E402  (shadows the submodule: use `from onnxcam.export import ...` for the rest)

__all__ += ["export"]
