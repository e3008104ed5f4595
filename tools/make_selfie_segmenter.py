"""Build models/selfie_segmentation.onnx, the real-weights segmentation demo, and models/samples/astronaut.jpg.

The weights ship inside a PyPI package: MediaPipe 0.10.14's wheel carries
mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite (Apache-2.0). tf2onnx converts it; its one MediaPipe
custom op, the final Convolution2DTransposeBias (2×2 kernel, stride 2, bias), becomes the standard ConvTranspose it
computes, and a Transpose makes the output channels-first: `mask` (N, 1, 256, 256), the person probability. The
photo is scikit-image's `astronaut` (NASA, public domain). Run in the fixture venv of tools/make_wild_fixtures.py:

    /work/wildenv/bin/pip download --no-deps mediapipe==0.10.14 -d /tmp/mp && /work/wildenv/bin/pip install scikit-image
    /work/wildenv/bin/python tools/make_selfie_segmenter.py /tmp/mp/mediapipe-0.10.14-*.whl

With --check PYTHON (a venv with mediapipe==0.10.14 itself), the converted model is compared with MediaPipe's own
SelfieSegmentation on the photo.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "selfie_segmentation.onnx"
PHOTO = ROOT / "models" / "samples" / "astronaut.jpg"
TFLITE = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"


def convert(wheel: Path):
    import onnx
    import tf2onnx
    from onnx import helper, numpy_helper

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            path = Path(z.extract(TFLITE, tmp))
        proto, _ = tf2onnx.convert.from_tflite(str(path), opset=17)
    g = proto.graph
    node = next(n for n in g.node if n.op_type == "TFL_Convolution2DTransposeBias")
    inits = {t.name: t for t in g.initializer}
    w = numpy_helper.to_array(inits[node.input[1]])  # (out, kh, kw, in), TFLite's transposed-conv layout
    producer = next(n for n in g.node if node.input[0] in n.output)  # NCHW → NHWC Transpose before the op
    assert producer.op_type == "Transpose" and list(producer.attribute[0].ints) == [0, 2, 3, 1] and w.shape[1:3] == (2, 2)
    g.initializer.extend([numpy_helper.from_array(w.transpose(3, 0, 1, 2).copy(), "segment_w")])
    at = list(g.node).index(node)
    g.node.remove(node)
    g.node.insert(at, helper.make_node("ConvTranspose", [producer.input[0], "segment_w", node.input[2]], ["segment_nchw"],
                                       strides=[2, 2], kernel_shape=[2, 2], name="segment"))
    g.node.insert(at + 1, helper.make_node("Transpose", ["segment_nchw"], [node.output[0]], perm=[0, 2, 3, 1],
                                           name="segment_nhwc"))
    out = g.output[0]
    g.node.append(helper.make_node("Transpose", [out.name], ["mask"], perm=[0, 3, 1, 2], name="mask"))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, [1, 1, 256, 256]))
    del proto.opset_import[:]
    proto.opset_import.append(helper.make_opsetid("", 17))
    proto.ir_version = 8
    props = {"onnxcam.mean": "0", "onnxcam.std": "1",
             "license": "Apache-2.0: MediaPipe selfie segmentation (mediapipe 0.10.14 wheel), converted by onnxcam's "
                        "tools/make_selfie_segmenter.py"}
    for k, v in props.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, MODEL)


def photo() -> np.ndarray:
    import cv2
    from skimage import data

    rgb = data.astronaut()
    cv2.imwrite(str(PHOTO), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


def ours(rgb: np.ndarray) -> np.ndarray:
    import cv2
    import onnxruntime as ort

    x = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32)[None] / 255
    return ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(["mask"], {"input_1": x})[0][0, 0]


CHECK = """
import json, sys, cv2, numpy as np, mediapipe as mp
rgb = cv2.cvtColor(cv2.imread(sys.argv[1]), cv2.COLOR_BGR2RGB)
with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as s:
    mask = s.process(rgb).segmentation_mask
print(json.dumps(cv2.resize(mask, (256, 256), interpolation=cv2.INTER_AREA).tolist()))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("wheel", type=Path, help="mediapipe-0.10.14-*.whl (pip download --no-deps mediapipe==0.10.14)")
    p.add_argument("--check", metavar="PYTHON", help="a Python with mediapipe==0.10.14 installed: compare with it")
    args = p.parse_args()
    convert(args.wheel)
    rgb = photo()
    mask = ours(rgb)
    print(f"{MODEL.name}: {MODEL.stat().st_size} B; person pixels on {PHOTO.name}: {(mask > 0.5).mean():.1%}")
    if args.check:
        ref = np.array(json.loads(subprocess.run([args.check, "-c", CHECK, str(PHOTO)], capture_output=True, text=True,
                                                 check=True).stdout))
        agree = ((mask > 0.5) == (ref > 0.5)).mean()
        print(f"MediaPipe's own SelfieSegmentation: max |Δ| = {np.abs(mask - ref).max():.3f}, mask agreement {agree:.2%}")


if __name__ == "__main__":
    main()
