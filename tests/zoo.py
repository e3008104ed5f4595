"""torchvision classifiers with seeded random weights, exported to ONNX by both torch exporters (not a test module).

Weights are random but reproducible and *realistic*: after torch.manual_seed(0) and the torchvision init,
every BatchNorm gets running statistics measured on two batches of noise (so activations stay O(1) through
the network, ReLU kinks sit where they would in a trained model and SiLU/GELU are used in their nonlinear
range), normalization layers get non-trivial affine parameters, ConvNeXt's layer scales (1e-6 at init,
~0.1–1 once trained) get U(0.1, 0.5), and weights that torchvision initializes to zero (ViT's head) get small
random values, so that no logit or gradient is identically zero or negligible.

Exports are cached in a folder by file name (model, exporter, torch version, ZOO_VERSION): the pytest
fixture keeps them for a session, or across runs when ONNXCAM_TEST_CACHE names a folder.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
import torchvision

ZOO_VERSION = 2  # bump when the weights or the export settings change: cached files are keyed on it
EXPORTERS = ("legacy", "dynamo")
INPUT, OUTPUT = "input", "logits"
BATCH = 3
MAX_IR_VERSION = 10  # onnx >= 1.23 writes IR 14 by default; onnxruntime 1.31 reads at most 13


@dataclass(frozen=True)
class Spec:
    kwargs: dict = field(default_factory=dict)
    size: int = 224
    smooth: bool = False  # no ReLU/ReLU6/HardSwish/MaxPool kinks: max relative error is meaningful
    slow: bool = False


# Activations decide `smooth`: ResNet/VGG/DenseNet/SqueezeNet/GoogLeNet/ShuffleNet/Inception/RegNet use ReLU
# (+ MaxPool); MobileNetV2 ReLU6; MobileNetV3 ReLU + HardSwish/HardSigmoid. EfficientNet (SiLU, Sigmoid),
# ConvNeXt, ViT and Swin (GELU, LayerNorm, Softmax) are smooth.
MODELS: dict[str, Spec] = {
    "resnet18": Spec(),
    "resnet50": Spec(),
    "vgg11": Spec(slow=True),
    "densenet121": Spec(slow=True),
    "mobilenet_v2": Spec(),
    "mobilenet_v3_small": Spec(),
    "mobilenet_v3_large": Spec(),
    "efficientnet_b0": Spec(smooth=True),
    "regnet_y_400mf": Spec(),
    "squeezenet1_1": Spec(),
    "googlenet": Spec(dict(aux_logits=False, init_weights=True)),
    "shufflenet_v2_x0_5": Spec(),
    "inception_v3": Spec(dict(aux_logits=False, init_weights=False), size=299, slow=True),
    "convnext_tiny": Spec(smooth=True, slow=True),
    "vit_b_16": Spec(smooth=True, slow=True),
    "swin_t": Spec(smooth=True, slow=True),
}


def build(name: str) -> torch.nn.Module:
    """The torchvision model `name` with seeded random weights, in eval mode (a fresh copy on every call)."""
    model, rng_state = _build(name)
    torch.set_rng_state(rng_state)  # the global RNG as if the model had just been built
    return copy.deepcopy(model)


@functools.lru_cache(maxsize=1)  # an export and the torch reference of one model share it (and CNN calibration is slow)
def _build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    spec = MODELS[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(torchvision.models, name)(weights=None, **spec.kwargs)
    randomize(model, spec.size)
    return model.eval(), torch.get_rng_state()


def randomize(model: torch.nn.Module, size: int) -> None:
    """Realistic random weights in place (see the module docstring); `size`: input size for BN calibration."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear | torch.nn.Conv2d) and not m.weight.any():
                m.weight.normal_(0, 0.02, generator=g)
            if isinstance(m, torch.nn.LayerNorm | torch.nn.BatchNorm2d) and m.weight is not None:
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            if isinstance(getattr(m, "layer_scale", None), torch.nn.Parameter):  # ConvNeXt: 1e-6 at init
                m.layer_scale.uniform_(0.1, 0.5, generator=g)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        if norms:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
            model.train()
            for _ in range(2):
                model(torch.randn(4, 3, size, size, generator=g))
    model.eval()


def example(name: str, batch: int = BATCH, seed: int = 1) -> torch.Tensor:
    size = MODELS[name].size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def file_name(name: str, exporter: str, batch: int | None = None) -> str:
    tag = "" if batch is None else f"-static{batch}"
    return f"{name}-{exporter}{tag}-torch{torch.__version__.replace('+', '_')}-v{ZOO_VERSION}.onnx"


def export(name: str, exporter: str, folder: Path, static_batch: int | None = None) -> Path:
    """The cached ONNX export of `name` (dynamic batch unless static_batch is given); exported on first use.

    A dynamo export that cannot have a dynamic batch falls back to a static batch of BATCH:
    `is_batch_dynamic` tells the two apart from the file itself."""
    path = Path(folder) / file_name(name, exporter, static_batch)
    if path.exists():
        return path
    model = build(name)
    return export_module(model, example(name, static_batch or BATCH), exporter, path, dynamic=static_batch is None)


def export_module(model: torch.nn.Module, x: torch.Tensor, exporter: str, path: Path, dynamic: bool = True) -> Path:
    """Export `model` on example input `x` to `path` (IR ≤ MAX_IR_VERSION, exporters silenced)."""
    with _quiet():
        if exporter == "legacy":
            proto = _legacy(model, x, dynamic)
        elif exporter == "dynamo":
            proto = _dynamo(model, x, dynamic)
        else:
            raise ValueError(f"unknown exporter {exporter!r}")
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    onnx.save(proto, partial)
    partial.replace(path)  # atomic: an interrupted run leaves no truncated model under the final name
    return path


def _legacy(model, x, dynamic: bool) -> onnx.ModelProto:
    buffer = io.BytesIO()
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic else None
    torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=17, input_names=[INPUT],
                      output_names=[OUTPUT], dynamic_axes=axes)
    return onnx.load_model_from_string(buffer.getvalue())


def _dynamo(model, x, dynamic: bool) -> onnx.ModelProto:
    def run(shapes):
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, input_names=[INPUT],
                                    output_names=[OUTPUT], dynamic_shapes=shapes, verbose=False, report=False)
        return program.model_proto

    if not dynamic:
        return run(None)
    try:
        return run(({0: torch.export.Dim("batch", min=1, max=1024)},))
    except Exception:  # the batch is specialized somewhere in the model: keep the static export
        return run(None)


def is_batch_dynamic(path: Path) -> bool:
    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return not dim.HasField("dim_value")


@contextlib.contextmanager
def _quiet():
    """The exporters warn and log a lot (TracerWarning, onnxscript passes); none of it is news to a test."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
