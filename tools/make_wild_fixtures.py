"""Build tests/fixtures/wild/: small real models from exporters other than torch's default path, for tests/test_wild.py.

Every fixture is made here, deterministically (seeded weights, configs built locally, no pretrained weights, no
downloads), by the real exporter: tf2onnx (Keras), paddle2onnx, torch's TorchScript exporter at opsets 9 and 11 (model-zoo
style; onnx.version_converter has no Gemm adapter from 11 down to 9), timm, transformers, ultralytics, and
precision/format tools (onnxconverter-common fp16, onnxruntime QDQ quantization, onnxslim, external data). The
frameworks live in their own venv, outside the repo:

    python3 -m venv /work/wildenv && /work/wildenv/bin/pip install 'torch==2.14.1' 'torchvision==0.29.1' \
        onnx onnxruntime onnxscript onnxslim onnxconverter-common timm transformers tensorflow-cpu tf-keras \
    && /work/wildenv/bin/pip install paddlepaddle paddle2onnx ultralytics tf2onnx

(paddle2onnx 2.1.0 pins onnx 1.17.0, which every other tool here accepts.) Versions used: see the manifest's
"source" fields.

    OMP_NUM_THREADS=1 /work/wildenv/bin/python tools/make_wild_fixtures.py [NAME...]   # all, or some fixtures

Rebuilds give the same weights and graphs; the bytes differ only in tf2onnx's generated tensor names and
ultralytics' export date (metadata). The torch twins (`twin`) are importable without those frameworks:
tests/test_wild.py rebuilds them, with the same seeds and the pinned torch, as the float64 torch.autograd oracle of
the torch-sourced fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "wild"
SIZE = 64  # input side of every fixture
CLASSES = 10
MAX_IR = 10  # onnx >= 1.23 writes IR 14; the onnxruntime releases in use read at most 13 (10 covers opset 22)


# ---------------------------------------------------------------- torch twins (also the test's oracle)


class Block(nn.Module):
    """A ResNet basic block: conv-bn-relu-conv-bn plus a (projected) shortcut, then relu."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + self.short(x))


class ResNetish(nn.Module):
    """A narrow ResNet (BatchNorm, ReLU, MaxPool, global average pool); `caffe_head`: a 1x1-conv classifier
    whose output stays (N, C, 1, 1), as Caffe-converted models have."""

    def __init__(self, caffe_head: bool = False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.caffe_head = caffe_head
        self.fc = nn.Conv2d(32, CLASSES, 1) if caffe_head else nn.Linear(32, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.layers(self.stem(x)))
        return self.fc(y) if self.caffe_head else self.fc(torch.flatten(y, 1))


class _LRNOp(torch.autograd.Function):
    """Exports as one ONNX LRN node (torch's own export decomposes LocalResponseNorm into pools and pows)."""

    @staticmethod
    def forward(ctx, x, size: int, alpha: float, beta: float, k: float):  # noqa: ANN001, ANN205
        return nn.functional.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size: int, alpha: float, beta: float, k: float):  # noqa: ANN001, ANN205
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.LocalResponseNorm):
    """torch's LocalResponseNorm (same formula as ONNX LRN), exported as the LRN op."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return _LRNOp.apply(x, self.size, self.alpha, self.beta, self.k)
        return super().forward(x)


class AlexNetLRN(nn.Module):
    """A narrow AlexNet with LocalResponseNorm; alpha=1 (not AlexNet's 1e-4, tuned for 0-255 inputs) so that
    LRN's cross-channel terms weigh in the gradient of unit-scale activations."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, 2, 2), nn.ReLU(), LRN(5, alpha=1.0, beta=0.75, k=1.0), nn.MaxPool2d(3, 2),
            nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), LRN(5, alpha=1.0, beta=0.75, k=1.0), nn.MaxPool2d(3, 2),
            nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(32 * 3 * 3, 64), nn.ReLU(), nn.Linear(64, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


TWINS: dict[str, Callable[[], nn.Module]] = {
    "resnetish": ResNetish,
    "caffe_head": lambda: ResNetish(caffe_head=True),
    "alexnet_lrn": AlexNetLRN,
}


def twin(name: str, seed: int = 0) -> nn.Module:
    """The torch model a torch-sourced fixture was exported from: seeded init, then seeded BatchNorm statistics
    and affine terms (fresh ones are the identity, which would hide BatchNorm's gradient)."""
    torch.manual_seed(seed)
    model = TWINS[name]()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
    return model.eval()


# ---------------------------------------------------------------- saving, versions, the manifest


def version(package: str) -> str:
    from importlib.metadata import version as v

    return f"{package} {v(package)}"


def save(proto, name: str, external: bool = False) -> None:  # noqa: ANN001  (onnx.ModelProto, imported lazily)
    """Write OUT/name with an IR version that onnxruntime reads; `external`: weights in OUT/name.data."""
    import onnx

    if proto.ir_version > MAX_IR:
        proto.ir_version = onnx.helper.find_min_ir_version_for(proto.opset_import, ignore_unknown=True)
    if external:
        (OUT / (name + ".data")).unlink(missing_ok=True)  # onnx.save appends to an existing data file
        onnx.save(proto, OUT / name, save_as_external_data=True, all_tensors_to_one_file=True, location=name + ".data",
                  size_threshold=0)
    else:
        onnx.save(proto, OUT / name)


def torch_export(model: nn.Module, name: str, batch: int = 2, dynamic: bool = True, dynamo: bool = True,
                 opset: int = 18):
    """torch.onnx.export on a seeded input; dynamo with a dynamic batch needs an example batch > 1 (a size-1
    dimension is specialized)."""
    import onnx

    x = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    path = OUT / name
    if dynamo:
        shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
        torch.onnx.export(model, (x,), path, dynamo=True, dynamic_shapes=shapes, opset_version=opset,
                          input_names=["input"], output_names=["logits"], external_data=False, verbose=False)
    else:
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}} if dynamic else None)
    proto = onnx.load(path)
    save(proto, name)
    return proto


def torch_entry(twin_name: str, exporter: str, wild: str) -> dict:
    return {"source": f"{exporter} ({version('torch')})", "wild": wild, "oracle": "torch",
            "twin": {"name": twin_name, "seed": 0,
                     "rebuild": f"make_wild_fixtures.twin({twin_name!r}) (tools/ on sys.path, torch==2.14.1)"}}


# Calibrated variances plus this fraction of their mean: a channel nearly constant on the calibration batch would
# otherwise get a gain of 1/sqrt(eps) and make the whole network ill-conditioned (float32 forward passes 1e-3 off).
VAR_FLOOR = 0.1


def calibration_batch() -> np.ndarray:
    """8 seeded NCHW images: BatchNorm statistics are set from them, as training would have set them."""
    return np.random.default_rng(3).standard_normal((8, 3, SIZE, SIZE)).astype(np.float32)


def calibrate_batchnorm(model: nn.Module) -> None:
    """Fresh BatchNorm statistics (mean 0, variance 1) let activations shrink layer after layer until a Softmax
    output is flat to float32 precision; set them from one training-mode pass on the calibration batch (then floored)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.momentum = 1.0  # running = (1 - momentum) * running + momentum * batch
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(calibration_batch()))
    model.eval()
    for m in bns:
        m.momentum = 0.1
        m.running_var += VAR_FLOOR * m.running_var.mean()


# ---------------------------------------------------------------- fixtures: torch CNN variants


def resnetish() -> dict:
    torch_export(twin("resnetish"), "resnetish.onnx")
    return torch_entry("resnetish", "torch.onnx.export(dynamo=True), opset 18, dynamic batch",
                       "none: the control, and the float model the precision/format variants start from")


def resnetish_fp16() -> dict:
    return _fp16(keep_io_types=False)


def resnetish_fp16_io32() -> dict:
    return _fp16(keep_io_types=True)


def _fp16(keep_io_types: bool) -> dict:
    import onnx
    from onnxconverter_common import float16

    proto = float16.convert_float_to_float16(onnx.load(OUT / "resnetish.onnx"), keep_io_types=keep_io_types)
    name = "resnetish_fp16_io32" if keep_io_types else "resnetish_fp16"
    save(proto, name + ".onnx")
    entry = torch_entry("resnetish", "resnetish.onnx -> onnxconverter_common.float16.convert_float_to_float16"
                        f"(keep_io_types={keep_io_types})", "float16 weights and activations" +
                        (", float32 inputs/outputs with Cast nodes" if keep_io_types else ", float16 inputs and outputs"))
    entry["source"] += f", {version('onnxconverter-common')}"
    entry["oracle"] = "fd-kinks"  # the file itself in float64, linearized at ORT's float16 kink decisions
    return entry


def resnetish_qdq() -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(2)
            self.rows = iter([{"input": rng.standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)} for _ in range(8)])

        def get_next(self) -> dict | None:
            return next(self.rows, None)

    quantize_static(OUT / "resnetish.onnx", OUT / "resnetish_qdq.onnx", Reader(), quant_format=QuantFormat.QDQ)
    save(onnx.load(OUT / "resnetish_qdq.onnx"), "resnetish_qdq.onnx")
    entry = torch_entry("resnetish", "resnetish.onnx -> onnxruntime.quantization.quantize_static(QDQ, 8 calibration "
                        "inputs)", "int8 QuantizeLinear/DequantizeLinear pairs on weights and activations; "
                        "the Relu after each Conv is folded into the activation quantizer's range")
    entry["source"] += f", {version('onnxruntime')}"
    entry["oracle"] = "fd-kinks"  # the file linearized at ORT's decisions: the straight-through gradient
    return entry


def resnetish_slim() -> dict:
    import onnx
    import onnxslim

    save(onnxslim.slim(onnx.load(OUT / "resnetish.onnx")), "resnetish_slim.onnx")
    entry = torch_entry("resnetish", "resnetish.onnx -> onnxslim.slim", "onnxslim's pass over the dynamo export (node "
                        "metadata dropped, shapes re-inferred; BatchNorm was already folded by the exporter)")
    entry["source"] += f", {version('onnxslim')}"
    return entry


def resnetish_extdata() -> dict:
    import onnx

    save(onnx.load(OUT / "resnetish.onnx"), "resnetish_extdata.onnx", external=True)
    return torch_entry("resnetish", "resnetish.onnx -> onnx.save(save_as_external_data=True)",
                       "every weight in the external file resnetish_extdata.onnx.data")


def resnetish_static_b1() -> dict:
    torch_export(twin("resnetish"), "resnetish_static_b1.onnx", batch=1, dynamic=False)
    return torch_entry("resnetish", "torch.onnx.export(dynamo=True), opset 18, static batch 1",
                       "static batch 1 everywhere: input, output and the "
                       "Reshape (allowzero=1) shape constant")


def caffe_head() -> dict:
    torch_export(twin("caffe_head"), "caffe_head.onnx")
    return torch_entry("caffe_head", "torch.onnx.export(dynamo=True), opset 18, dynamic batch",
                       "Caffe-style classifier: a 1x1 Conv after global pooling, output (N, 10, 1, 1), no Flatten")


# ---------------------------------------------------------------- fixtures: model-zoo style old opsets


def zoo_alexnet_lrn_opset11() -> dict:
    torch_export(twin("alexnet_lrn"), "zoo_alexnet_lrn_opset11.onnx", dynamo=False, opset=11)
    return torch_entry("alexnet_lrn", "torch.onnx.export(dynamo=False), opset 11, dynamic batch",
                       "opset 11 (model-zoo era), IR 6, LRN op, Flatten + Gemm head")


def zoo_alexnet_lrn_opset9() -> dict:
    """Model-zoo files: opset 9, IR 3, every initializer also listed as a graph input. Exported at opset 9 by torch's
    TorchScript exporter (as zoo files were): onnx.version_converter has no Gemm adapter from opset 11 down to 9."""
    import onnx

    proto = torch_export(twin("alexnet_lrn"), "zoo_alexnet_lrn_opset9.onnx", dynamo=False, opset=9)
    proto.ir_version = 3
    listed = {i.name for i in proto.graph.input}
    proto.graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in proto.graph.initializer if t.name not in listed)
    save(proto, "zoo_alexnet_lrn_opset9.onnx")
    return torch_entry("alexnet_lrn", "torch.onnx.export(dynamo=False), opset 9, dynamic batch; then IR 3 and "
                       "initializers listed as inputs", "opset 9, IR version 3, initializers also listed as graph "
                       "inputs, LRN op (the ONNX Model Zoo's old files)")


# ---------------------------------------------------------------- fixtures: other exporters


def keras_mobilenetv2() -> dict:
    """tf2onnx from a tf_keras application (legacy Keras 2, which tf2onnx reads)."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf2onnx
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35, weights=None, classes=CLASSES)
    bns = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0  # one training-mode pass sets the moving statistics to the calibration batch's
    model(calibration_batch().transpose(0, 2, 3, 1), training=True)
    for layer in bns:
        layer.momentum = 0.99
        layer.moving_variance.assign(layer.moving_variance + VAR_FLOOR * tf_keras.backend.mean(layer.moving_variance))
    import tensorflow as tf

    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    save(proto, "keras_mobilenetv2.onnx")
    return {"source": f"tf2onnx.convert.from_keras, opset 13 ({version('tf2onnx')}, {version('tf_keras')}, "
                      f"{version('tensorflow')})",
            "wild": "NHWC input and a Transpose to NCHW, Softmax output, an unused ai.onnx.ml opset import, ReLU6 as Clip, "
                    "explicit Pad nodes, MatMul head",
            "oracle": "fd-kinks",
            "twin": "tf_keras.utils.set_random_seed(0); tf_keras.applications.MobileNetV2(input_shape=(64, 64, 3), "
                    "alpha=0.35, weights=None, classes=10); BatchNorm statistics as in make_wild_fixtures.keras_mobilenetv2"}


def paddle_mobilenetv1() -> dict:
    """paddle.jit.save, then paddle2onnx.export without the Polygraphy pass (which would rename the batch dim and
    pip-install onnx_graphsurgeon on the fly): the converter's own output, batch dim_value -1."""
    import tempfile

    import onnx
    import paddle
    import paddle2onnx

    paddle.seed(0)
    model = paddle.vision.models.mobilenet_v1(scale=0.25, num_classes=CLASSES)
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    for m in bns:
        m._momentum = 0.0  # running = momentum * running + (1 - momentum) * batch
    model.train()
    model(paddle.to_tensor(calibration_batch()))
    model.eval()
    for m in bns:
        m._momentum = 0.9
        m._variance.set_value(m._variance + VAR_FLOOR * m._variance.mean())
    spec = [paddle.static.InputSpec([None, 3, SIZE, SIZE], "float32", "input")]
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"{tmp}/model"
        paddle.jit.save(model, prefix, input_spec=spec)
        program = next(p for p in (f"{prefix}.json", f"{prefix}.pdmodel") if os.path.exists(p))
        paddle2onnx.export(program, f"{prefix}.pdiparams", str(OUT / "paddle_mobilenetv1.onnx"), opset_version=11,
                           optimize_tool="None")
    save(onnx.load(OUT / "paddle_mobilenetv1.onnx"), "paddle_mobilenetv1.onnx")
    return {"source": f"paddle.jit.save -> paddle2onnx.export, opset 11 ({version('paddle2onnx')}, "
                      f"{version('paddlepaddle')})",
            "wild": "paddle2onnx graph: a Constant node per weight, unfolded opset-9 BatchNormalization with momentum, "
                    "MatMul+Add head, batch dim_param DynamicDimension.0 (2.x; 1.x wrote dim_value -1)",
            "oracle": "fd-kinks",
            "twin": "paddle.seed(0); paddle.vision.models.mobilenet_v1(scale=0.25, num_classes=10); BatchNorm statistics "
                    "as in make_wild_fixtures.paddle_mobilenetv1"}


def timm_mobilevit() -> dict:
    """A narrow MobileViT built from timm's own blocks: its unfold/fold reshapes are what loses shape inference."""
    from dataclasses import replace

    from timm.models.byobnet import ByobNet
    from timm.models.mobilevit import _inverted_residual_block, _mobilevit_block, model_cfgs

    cfg = model_cfgs["mobilevit_xxs"]
    blocks = (_inverted_residual_block(d=1, c=16, s=1, br=2.0), _inverted_residual_block(d=1, c=24, s=2, br=2.0),
              _mobilevit_block(d=1, c=32, s=2, transformer_dim=32, transformer_depth=1, patch_size=2, br=2.0),
              _mobilevit_block(d=1, c=48, s=2, transformer_dim=48, transformer_depth=1, patch_size=2, br=2.0))
    torch.manual_seed(0)
    model = ByobNet(replace(cfg, blocks=blocks, stem_chs=16, num_features=96), num_classes=CLASSES).eval()
    torch_export(model, "timm_mobilevit.onnx")
    return {"source": f"timm ByobNet (MobileViT blocks) -> torch.onnx.export(dynamo=True), opset 18 ({version('timm')}, "
                      f"{version('torch')})",
            "wild": "MobileViT unfold/fold Reshape+Transpose chains around the transformer blocks, SiLU, LayerNorm",
            "oracle": "fd",
            "twin": "torch.manual_seed(0); timm.models.byobnet.ByobNet(dataclasses.replace(timm.models.mobilevit."
                    "model_cfgs['mobilevit_xxs'], blocks=<the 4 blocks in tools/make_wild_fixtures.py>, stem_chs=16, "
                    "num_features=96), num_classes=10).eval()"}


def hf_vit() -> dict:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=CLASSES)
    model = ViTForImageClassification(config).eval()
    torch_export(_Logits(model), "hf_vit.onnx")
    return {"source": f"transformers ViTForImageClassification -> torch.onnx.export(dynamo=True), opset 18 "
                      f"({version('transformers')}, {version('torch')})",
            "wild": "a transformer: 8x8 patches, class token, GELU (Erf), LayerNormalization, attention MatMuls",
            "oracle": "fd",
            "twin": "torch.manual_seed(0); ViTForImageClassification(ViTConfig(image_size=64, patch_size=8, "
                    "hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=10))"}


class _Logits(nn.Module):
    """A transformers model returning its logits tensor (not a ModelOutput)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def ultralytics_export(yaml_file: str, name: str, changes: dict, folder: Path, **export) -> tuple[nn.Module, Path]:
    """An ultralytics model from one of its own yaml files with `changes`, seeded and BatchNorm-calibrated, exported
    offline by ultralytics' own exporter into `folder`; `name` (e.g. yolo11n-cls.yaml) picks the scale."""
    import yaml

    os.environ["YOLO_OFFLINE"] = "1"
    import ultralytics
    from ultralytics import YOLO

    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg" / "models" / yaml_file).read_text())
    path = folder / name
    path.write_text(yaml.safe_dump({**cfg, **changes}))
    torch.manual_seed(0)
    yolo = YOLO(str(path))
    calibrate_batchnorm(yolo.model)
    cwd = os.getcwd()
    os.chdir(folder)  # ultralytics writes the export into the working folder
    try:
        onnx_path = Path(yolo.export(format="onnx", opset=17, simplify=False, **export)).resolve()
    finally:
        os.chdir(cwd)
    return yolo.model.eval(), onnx_path


def yolo_cls() -> dict:
    """An ultralytics YOLO11n classifier from ultralytics' own yaml, exported by ultralytics offline; nc 10 and the n
    scale's width halved (0.125) keep the file at ~1.5 MB."""
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        _, path = ultralytics_export("11/yolo11-cls.yaml", "yolo11n-cls.yaml",
                                     {"nc": CLASSES, "scales": {"n": [0.50, 0.125, 1024]}}, Path(tmp), imgsz=SIZE,
                                     dynamic=False)
        save(onnx.load(path), "yolo_cls.onnx")
    return {"source": f"ultralytics YOLO('yolo11n-cls.yaml' with nc: 10, width 0.125).export(format='onnx', imgsz=64, opset=17) "
                      f"({version('ultralytics')}, {version('torch')})",
            "wild": "ultralytics export: static batch 1, SiLU, C3k2 Split/Concat, C2PSA attention, Softmax output",
            "oracle": "fd",
            "twin": "torch.manual_seed(0); ultralytics.YOLO(<ultralytics/cfg/models/11/yolo11-cls.yaml with nc: 10 "
                    "and scales n: [0.5, 0.125, 1024], saved as yolo11n-cls.yaml>); make_wild_fixtures.calibrate_batchnorm"}


# ---------------------------------------------------------------- main


FIXTURES: dict[str, Callable[[], dict]] = {f.__name__: f for f in (
    resnetish, resnetish_fp16, resnetish_fp16_io32, resnetish_qdq, resnetish_slim, resnetish_extdata,
    resnetish_static_b1, caffe_head, zoo_alexnet_lrn_opset11, zoo_alexnet_lrn_opset9, keras_mobilenetv2,
    paddle_mobilenetv1, timm_mobilevit, hf_vit, yolo_cls)}


def describe(name: str, entry: dict) -> dict:
    """The manifest row: what the builder said plus what the file itself says (opset, IR, input, size)."""
    import onnx

    proto = onnx.load(OUT / f"{name}.onnx", load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    image = next(i for i in proto.graph.input if i.name not in inits)
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in image.type.tensor_type.shape.dim]
    files = sorted(p.name for p in OUT.glob(f"{name}.onnx*"))
    return {"file": f"{name}.onnx", **entry, "opsets": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
            "ir_version": proto.ir_version, "input": {"name": image.name, "shape": dims,
                                                       "dtype": onnx.helper.tensor_dtype_to_np_dtype(
                                                           image.type.tensor_type.elem_type).name},
            "bytes": sum((OUT / f).stat().st_size for f in files), "files": files}


def main(names: list[str]) -> None:
    """Each fixture in its own process when several are asked for: TensorFlow and Paddle crash when loaded in one."""
    names = names or list(FIXTURES)
    if len(names) > 1:
        for name in names:
            subprocess.run([sys.executable, __file__, name], check=True)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name in names:
        print(f"building {name}", flush=True)
        manifest[name] = describe(name, FIXTURES[name]())
    ordered = {n: manifest[n] for n in FIXTURES if n in manifest}
    manifest_path.write_text(json.dumps(ordered, indent=1) + "\n")
    total = sum(e["bytes"] for e in ordered.values())
    print(f"{len(ordered)} fixtures, {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])
