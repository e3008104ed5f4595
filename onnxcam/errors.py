"""Errors users can act on: each message is one line saying what is wrong and what to do."""


class OnnxcamError(Exception):
    """Base class; the CLI prints the message and exits 1 (or 2 for bad usage)."""

    exit_code = 1


class ModelError(OnnxcamError):
    """The model file cannot be used (missing, not ONNX, unsafe, no image input...)."""


class LayerError(OnnxcamError):
    """A layer name that the model does not have, or a tensor that is not a layer."""

    exit_code = 2


class UnsupportedOpError(OnnxcamError):
    """An op on the gradient path has no gradient rule."""

    def __init__(self, op_type: str, node_name: str, detail: str = ""):
        self.op_type, self.node_name = op_type, node_name
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"no gradient rule for op {op_type!r} at node {node_name!r}{why}; "
            "the gradient-free method scorecam still works on this model"
        )


class UsageError(OnnxcamError):
    """A method, option or target the caller got wrong (exit code 2, as click's own usage errors)."""

    exit_code = 2
