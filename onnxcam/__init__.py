"""onnxcam: gradient-based explanations of ONNX image models with ONNX Runtime only."""

from .install import check_single_runtime

check_single_runtime()

from .autodiff import grad_name, gradient_model  # noqa: E402
from .errors import LayerError, ModelError, OnnxcamError, UnsupportedOpError, UsageError  # noqa: E402
from .model import Model, load_model  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "LayerError", "Model", "ModelError", "OnnxcamError", "UnsupportedOpError", "UsageError",
    "grad_name", "gradient_model", "load_model",
]

from . import targets  # noqa: E402
from .explainer import Explainer  # noqa: E402
from .explanation import Explanation  # noqa: E402

__all__ += ["Explainer", "Explanation", "targets"]

from .export import export  # noqa: E402  (shadows the submodule: use `from onnxcam.export import ...` for the rest)

__all__ += ["export"]

from .check import check  # noqa: E402  (shadows the submodule, as export does)

__all__ += ["check"]
