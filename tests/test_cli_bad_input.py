"""Bad images, options and values: one-line errors naming the value and the allowed range; odd images that work.

Runs the CLI in-process (click's CliRunner, the same code path as the command) on a small real CNN, so each
refusal costs milliseconds; tests/test_cli.py covers the subprocess and the demo model.
"""

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fuzz import small_cnn  # tools/ (on sys.path via conftest): the fuzzer's real 32x32 CNN
from onnx import numpy_helper

import onnxcam
from onnxcam.cli import main

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "models" / "samples" / "cat.jpg"


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_one_line_error(result, *words, code=None):
    assert result.exit_code in ((1, 2) if code is None else (code,)), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "internal error" not in lines[0]


def explain(model, image, tmp_path, *options):
    return cli("explain", model, image, "--out", tmp_path / "out", *options)


# ---------------------------------------------------------------- images


def test_empty_image(model, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert_one_line_error(explain(model, tmp_path / "empty.jpg", tmp_path), "empty.jpg", "is empty")


def test_missing_image(model, tmp_path):
    assert_one_line_error(explain(model, tmp_path / "nope.jpg", tmp_path), "image not found", "nope.jpg")


def test_folder_as_image_is_bad_usage(model, tmp_path):
    assert_one_line_error(explain(model, tmp_path, tmp_path), "is a directory", code=2)


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"not an image at all\n", CAT.read_bytes()[:600]],
                         ids=["png-garbage", "text", "truncated-jpeg"])
def test_unreadable_image(model, tmp_path, data):
    (tmp_path / "bad.png").write_bytes(data)
    assert_one_line_error(explain(model, tmp_path / "bad.png", tmp_path), "bad.png")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_decompression_bomb_header_is_refused(model, tmp_path):
    """A 300-byte PNG that declares 60000 x 60000 pixels: refused before OpenCV allocates 10 GB."""
    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 100))
            + _png_chunk(b"IEND", b""))
    (tmp_path / "bomb.png").write_bytes(data)
    assert_one_line_error(explain(model, tmp_path / "bomb.png", tmp_path), "bomb.png", "pixels")


@pytest.mark.parametrize("kind", ["gray", "rgba", "gray16", "tiny"])
def test_grayscale_rgba_16bit_and_tiny_images_become_rgb(model, tmp_path, kind):
    bgr = cv2.imread(str(CAT))
    image = {"gray": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), "rgba": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
             "gray16": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257, "tiny": lambda: bgr[:3, :5]}[kind]()
    cv2.imwrite(str(tmp_path / f"{kind}.png"), image)
    result = explain(model, tmp_path / f"{kind}.png", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / f"{kind}_gradcam.png").is_file()
    assert cv2.imread(str(tmp_path / "out" / f"{kind}_gradcam.png")).shape == (32, 32, 3)


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("flag,value,allowed", [
    ("--steps", 0, "1<=x<=100000"), ("--steps", -3, "1<=x<=100000"), ("--steps", 10**9, "1<=x<=100000"),
    ("--batch-size", 0, "1<=x<=4096"), ("--batch-size", -1, "1<=x<=4096"), ("--batch-size", 10**12, "1<=x<=4096"),
    ("--target", -1, "x>=0"), ("--size", 0, "1<=x<=16384"), ("--steps", "many", "not a valid integer"),
])
def test_out_of_range_options_name_value_and_range(model, tmp_path, flag, value, allowed):
    result = explain(model, CAT, tmp_path, "-m", "rsi-gradcam", flag, value)
    assert_one_line_error(result, flag, str(value), allowed, code=2)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("target", [10, 2**40])
def test_target_beyond_the_classes_names_the_range(model, tmp_path, target):
    assert_one_line_error(explain(model, CAT, tmp_path, "--target", target), str(target), "0..9")


@pytest.mark.parametrize("flag,value,words", [
    ("--mean", "nan", ["--mean", "finite"]), ("--mean", "1,2", ["1 or 3"]), ("--mean", "1e300", ["--mean", "-1e6..1e6"]),
    ("--std", "0", ["--std", "1e-6..1e6"]), ("--std", "-1,1,1", ["--std"]), ("--std", "1e-40", ["--std", "1e-40"]),
    ("--std", "inf", ["--std", "finite"]),
])
def test_normalization_that_would_make_nan_or_inf_is_refused(model, tmp_path, flag, value, words):
    assert_one_line_error(explain(model, CAT, tmp_path, flag, value), *words)


def test_broken_metadata_normalization_names_the_key(tmp_path):
    m = small_cnn()
    onnx.helper.set_model_props(m, {"onnxcam.mean": "nan,nan,nan", "onnxcam.std": "0.25"})
    onnx.save(m, tmp_path / "meta.onnx")
    assert_one_line_error(explain(tmp_path / "meta.onnx", CAT, tmp_path), "onnxcam.mean", "--mean")
    assert explain(tmp_path / "meta.onnx", CAT, tmp_path, "--mean", "0.5").exit_code == 0


def test_nan_scores_of_the_model_are_refused(tmp_path):
    m = small_cnn()
    bias = next(t for t in m.graph.initializer if t.name == "fc.b")
    bias.CopyFrom(numpy_helper.from_array(np.full(10, np.nan, np.float32), "fc.b"))
    onnx.save(m, tmp_path / "nan.onnx")
    assert_one_line_error(explain(tmp_path / "nan.onnx", CAT, tmp_path), "NaN or infinite")


def test_python_api_refuses_nan_inputs_and_bad_steps(model):
    ex = onnxcam.Explainer(model)
    x = np.zeros((1, 3, 32, 32), np.float32)
    for bad in (np.nan, np.inf):
        x[0, 1, 2, 3] = bad
        with pytest.raises(onnxcam.OnnxcamError, match="NaN or infinite"):
            ex.explain(x)
    for steps in (0, -1, 10**9, 2.5):
        with pytest.raises(onnxcam.OnnxcamError, match=r"steps must be an integer in 1\.\.100000; got"):
            ex.explain(np.zeros((1, 3, 32, 32), np.float32), method="rsi-gradcam", steps=steps)
    with pytest.raises(onnxcam.OnnxcamError, match=r"out of range: classes are 0\.\.9"):
        ex.explain(np.zeros((1, 3, 32, 32), np.float32), target=10)


def test_the_input_check_finds_any_non_finite_value_and_only_those():
    from onnxcam.runner import all_finite

    x = np.random.default_rng(0).standard_normal((2, 3, 8, 9)).astype(np.float32)
    assert all_finite(x)
    for values in ([np.nan], [np.inf], [-np.inf], [np.inf, -np.inf]):
        for at in [(0, 0, 0, 0), (1, 2, 7, 8), (1, 0, 3, 4)]:
            y = x.copy()
            for k, v in enumerate(values):
                y[(k, *at[1:])] = v
            assert not all_finite(y), (values, at)
    assert all_finite(np.full((2, 3, 8, 9), 3e38, np.float32))  # the sum overflows; every value is finite


def test_wrong_channel_count_names_the_shapes(model):
    with pytest.raises(onnxcam.OnnxcamError, match=r"input has shape \(1, 1, 32, 32\).*N, 3, 32, 32"):
        onnxcam.Explainer(model).explain(np.zeros((1, 1, 32, 32), np.float32))


def test_usage_errors_are_one_line_for_every_command(model, tmp_path):
    assert_one_line_error(cli("explain", model, CAT, "--device", "tpu"), "--device", "tpu", code=2)
    assert_one_line_error(cli("layers"), "Missing argument", code=2)
    assert_one_line_error(cli("explain", model), "Missing argument", code=2)


def _shared_node_name(m):
    m.graph.node[3].name = m.graph.node[9].name  # pool1 and gap: onnx.checker accepts it, ONNX Runtime does not


def _unknown_auto_pad(m):
    next(n for n in m.graph.node if n.name == "conv2").attribute.append(onnx.helper.make_attribute("auto_pad", "\u00e9"))


@pytest.mark.parametrize("mutate, words", [(_shared_node_name, "two nodes with same node name (gap)"),
                                           (_unknown_auto_pad, "AutoPadType")])
def test_models_onnx_runtime_refuses_are_not_exported_and_layers_json_stays_json(tmp_path, mutate, words):
    # fuzz findings: export wrote such models (exit 0) and their Triton entries, which ONNX Runtime then refused;
    # graphsurgeon's warning about the shared name went to stdout, into `layers --json`
    m = small_cnn()
    mutate(m)
    onnx.save(m, tmp_path / "m.onnx")
    result = cli("layers", "--json", tmp_path / "m.onnx")
    assert result.exit_code == 0 and json.loads(result.stdout)["auto"] == "features", result.output
    out = tmp_path / "out"
    assert_one_line_error(cli("export", tmp_path / "m.onnx", "-m", "gradcam", "-o", out / "e.onnx", "--triton", out / "repo"),
                          "ONNX Runtime cannot load the model", words, code=1)
    assert not out.exists() or not any(out.rglob("*"))


def _renamed(m, old, new):
    for n in m.graph.node:
        n.input[:] = [new if v == old else v for v in n.input]
        n.output[:] = [new if v == old else v for v in n.output]
    return m


@pytest.mark.parametrize("mutate, clash", [
    (lambda m: _renamed(m, "c2", "grad_seed"), "grad_seed"),
    (lambda m: _renamed(m, "c2", "features_grad"), "features_grad"),  # the auto layer's gradient output
    (lambda m: setattr(m.graph.node[5], "name", "features_grad"), "features_grad"),
    (lambda m: _renamed(m, "c2", "onnxcam_prob"), "onnxcam_prob"),
])
def test_names_onnxcam_adds_to_its_graphs_are_refused_when_the_model_has_them(tmp_path, mutate, clash):
    # fuzz findings: ONNX Runtime's "Duplicate definition" (explain) or an exported model that does not load (export)
    m = small_cnn()
    mutate(m)
    onnx.save(m, tmp_path / "m.onnx")
    assert_one_line_error(explain(tmp_path / "m.onnx", CAT, tmp_path), repr(clash), "rename it", code=1)
    assert_one_line_error(cli("export", tmp_path / "m.onnx", "-m", "gradcam", "-o", tmp_path / "e.onnx"), repr(clash),
                          "rename it", code=1)


def test_onnxcam_internal_names_in_the_model_are_skipped_by_fresh_names(tmp_path):
    m = _renamed(_renamed(small_cnn(), "c2", "onnxcam_grad/Mul_1"), "c3", "onnxcam_export/Shape_1")
    onnx.save(m, tmp_path / "m.onnx")
    assert explain(tmp_path / "m.onnx", CAT, tmp_path).exit_code == 0
    for method in ("gradcam", "rsi-gradcam"):
        result = cli("export", tmp_path / "m.onnx", "-m", method, "-o", tmp_path / f"{method}.onnx")
        assert result.exit_code == 0, result.output


def test_a_feature_map_sliced_empty_is_a_one_line_error(tmp_path):
    # fuzz finding: the GlobalAveragePool gradient rule divided by H·W = 0 (ZeroDivisionError, "internal error")
    m = small_cnn()
    m.graph.initializer.extend(onnx.numpy_helper.from_array(np.array([v], np.int64), name)
                               for name, v in (("s.start", 5), ("s.end", 5), ("s.axis", 2)))
    add = next(k for k, n in enumerate(m.graph.node) if n.name == "add3")
    m.graph.node.insert(add + 1, onnx.helper.make_node("Slice", ["a3", "s.start", "s.end", "s.axis"], ["a3_empty"]))
    next(n for n in m.graph.node if n.name == "relu3").input[0] = "a3_empty"
    del m.graph.value_info[:]
    onnx.save(m, tmp_path / "m.onnx")
    assert_one_line_error(explain(tmp_path / "m.onnx", CAT, tmp_path, "-m", "saliency"), "ONNX Runtime", code=1)


@pytest.mark.parametrize("value", ["abc", "1,2"])
def test_metadata_the_black_baseline_is_computed_from_is_checked(tmp_path, value):
    # fuzz finding: with --mean given, explain never checked onnxcam.mean, and rsi-gradcam's black baseline then failed
    # on it ("baseline of shape () does not broadcast"); export never checks it and raised ValueError ("internal error")
    m = small_cnn()
    onnx.helper.set_model_props(m, {"onnxcam.mean": value, "onnxcam.std": "0.25,0.25,0.25"})
    onnx.save(m, tmp_path / "m.onnx")
    assert_one_line_error(explain(tmp_path / "m.onnx", CAT, tmp_path, "-m", "rsi-gradcam", "--steps", "2", "--mean", "0.5"),
                          f"onnxcam.mean={value!r}", code=1)
    assert_one_line_error(cli("export", tmp_path / "m.onnx", "-m", "rsi-gradcam", "--steps", "2", "-o", tmp_path / "e.onnx"),
                          f"onnxcam.mean={value!r}", code=1)


@pytest.mark.parametrize("named", ["labels.txt", "m.onnx"])
def test_a_label_file_that_is_not_utf8_is_a_one_line_error(tmp_path, named):
    # fuzz finding: the label file the model's onnxcam.labels names (here a binary one, or the model itself) was
    # read as UTF-8 unchecked: UnicodeDecodeError, "internal error"
    m = small_cnn()
    m.metadata_props.add(key="onnxcam.labels", value=named)
    onnx.save(m, tmp_path / "m.onnx")
    (tmp_path / "labels.txt").write_bytes(b"\xff\xfec\x00a\x00t\x00\n")
    assert_one_line_error(explain(tmp_path / "m.onnx", CAT, tmp_path), "is not UTF-8 text", named, code=1)


def test_a_model_that_drops_batch_rows_is_a_one_line_error(tmp_path):
    # fuzz finding (`onnxcam check`): a Slice on the batch axis left no rows of scores; rsi-gradcam's targets came out
    # empty and the engine indexed them (IndexError, "internal error")
    m = small_cnn()
    m.graph.initializer.extend(onnx.numpy_helper.from_array(np.array([v], np.int64), name)
                               for name, v in (("s.start", 2**16), ("s.end", -(2**16)), ("s.axis", 0)))
    pool = next(k for k, n in enumerate(m.graph.node) if n.name == "pool1")
    m.graph.node.insert(pool + 1, onnx.helper.make_node("Slice", ["p1", "s.start", "s.end", "s.axis"], ["p1_none"]))
    next(n for n in m.graph.node if n.name == "conv2").input[0] = "p1_none"
    del m.graph.value_info[:]
    onnx.save(m, tmp_path / "m.onnx")
    assert_one_line_error(explain(tmp_path / "m.onnx", CAT, tmp_path, "-m", "rsi-gradcam", "--steps", "2"),
                          "returned 0 rows of scores for 1 input rows", code=1)


def test_gemm_trans_attributes_other_than_1_transpose_in_the_gradient_too(model):
    # fuzz finding: transB=3 transposes in ONNX Runtime (any non-zero value does), but the Gemm gradient rule built
    # Gemm(transB=1 - 3) and its graph did not load ("Dimension mismatch"; an internal error in export)
    m = small_cnn()
    next(a for n in m.graph.node if n.name == "fc" for a in n.attribute if a.name == "transB").i = 3
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    want = onnxcam.Explainer(model, device="cpu").explain(x, method="saliency").heatmap
    np.testing.assert_allclose(onnxcam.Explainer(m, device="cpu").explain(x, method="saliency").heatmap, want, atol=1e-6)
    onnxcam.export(m, "gradcam")
