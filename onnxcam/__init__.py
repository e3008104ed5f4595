"""onnxcam: gradient-based explanations of ONNX image models with ONNX Runtime only."""

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
