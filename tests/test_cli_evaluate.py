"""`onnxcam evaluate` on the demo model: table, JSON, curves PNG, resume after a crash, and bad input.

The curves' end points are checked against a plain onnxruntime session (softmax of the explained class at the
image and at the all-zero image), the summary against numpy over the per-image values; the metrics themselves
are tested in their own suite.
"""

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from onnxcam.cli import main
from onnxcam.image import Preprocessing, read_rgb

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLES = [ROOT / "models" / "samples" / "cat.jpg", ROOT / "models" / "samples" / "coffee.jpg"]
IMAGENET = ROOT.parent / "shared" / "data" / "imagenet-sample"
STEP = ["--deletion-step", "3136"]  # 16 steps on 224x224: quick
METRICS = ["--metric", "deletion,insertion", "--metric", "gini"]


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def probabilities(image: Path) -> tuple[np.ndarray, np.ndarray]:
    """Softmax at the preprocessed image and at the all-zero input (the end of the deletion curve), by plain ORT."""
    x, _ = Preprocessing((224, 224), (0.5,) * 3, (0.5,) * 3)(read_rgb(image))
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = []
    for inp in (x[None], np.zeros_like(x)[None]):
        z = session.run(None, {name: inp.astype(np.float32)})[0][0].astype(np.float64)
        e = np.exp(z - z.max())
        out.append(e / e.sum())
    return out[0], out[1]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "eval.json"
    result = cli("evaluate", MODEL, *SAMPLES, "-m", "gradcam", *METRICS, *STEP, "--json", out)
    return out, result


def test_table_json_and_png(first_run):
    out, result = first_run
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert list(report["methods"]) == ["gradcam", "random", "center"]  # the baselines are always there
    assert report["metrics"] == ["deletion", "insertion", "gini"]
    lines = result.output.splitlines()
    for method in report["methods"]:
        row = next(line for line in lines if line.startswith(method + " "))
        for metric in report["metrics"]:
            values = [report["per_image"][method][str(p)][metric] for p in SAMPLES]
            mean, se = np.mean(values), np.std(values, ddof=1) / np.sqrt(len(values))
            assert report["methods"][method][metric] == pytest.approx(mean, abs=1e-9)
            assert report["stderr"][method][metric] == pytest.approx(se, abs=1e-9)
            assert f"{mean:.3f} ± {se:.3f}" in row
    png = cv2.imread(str(out.with_name("eval_curves.png")))
    assert png is not None and png.shape[0] > 200 and png.shape[1] > 600
    assert len(report["curves"]["gradcam"]["deletion"]) == 17


def test_curves_start_and_end_where_plain_onnxruntime_says(first_run):
    out, _ = first_run
    report = json.loads(out.read_text())
    for record in log_lines(out.with_suffix(".jsonl")):
        image = Path(record["image"])
        p, p_zero = probabilities(image)
        assert record["target"] == int(p.argmax())  # no labels: the predicted class is explained
        deletion = record["curves"]["deletion"]
        assert deletion[0] == pytest.approx(p[record["target"]], abs=1e-4)
        assert deletion[-1] == pytest.approx(p_zero[record["target"]], abs=1e-4)
        assert record["curves"]["insertion"][-1] == pytest.approx(p[record["target"]], abs=1e-4)
        assert report["targets"][str(SAMPLES[[s.resolve() for s in SAMPLES].index(image.resolve())])] == record["target"]


def test_rerun_recomputes_nothing_and_a_new_metric_only_itself(first_run):
    out, _ = first_run
    log = out.with_suffix(".jsonl")
    before = log.read_text()
    again = cli("evaluate", MODEL, *SAMPLES, "-m", "gradcam", *METRICS, *STEP, "--json", out)
    assert again.exit_code == 0, again.output
    assert log.read_text() == before
    assert "reusing 6 finished" in again.output
    more = cli("evaluate", MODEL, *SAMPLES, "-m", "gradcam", *METRICS, "--metric", "top-k", *STEP, "--json", out)
    assert more.exit_code == 0, more.output
    new = log_lines(log)[len(before.splitlines()):]
    assert len(new) == 6 and all(set(r["values"]) == {"top-k"} for r in new)
    assert json.loads(out.read_text())["metrics"] == ["deletion", "insertion", "gini", "top-k"]


def test_a_crash_halfway_loses_only_the_pair_in_progress(first_run, tmp_path):
    out, _ = first_run
    full = log_lines(out.with_suffix(".jsonl"))[:6]
    log = tmp_path / "eval.jsonl"
    lines = out.with_suffix(".jsonl").read_text().splitlines(keepends=True)[:6]
    log.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])  # killed while writing the 5th record
    result = cli("evaluate", MODEL, *SAMPLES, "-m", "gradcam", *METRICS, *STEP, "--json", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    assert "reusing 4 finished" in result.output
    records = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
    assert len(records) == 6
    again = {(r["image"], r["method"]): r["values"] for r in records[4:]}
    for r in full[4:]:  # the recomputed pairs give the same numbers (random's map is seeded)
        assert again[r["image"], r["method"]] == pytest.approx(r["values"], abs=1e-6)


@pytest.mark.skipif(not (IMAGENET / "labels.csv").is_file(), reason="../shared/data/imagenet-sample is not here")
def test_labels_choose_the_explained_class(tmp_path):
    rows = list(csv.DictReader(open(IMAGENET / "labels.csv", newline="")))[:2]
    images = [IMAGENET / r["file"] for r in rows]
    out = tmp_path / "e.json"
    result = cli("evaluate", MODEL, *images, "--labels", IMAGENET / "labels.csv", "--metric", "deletion",
                 *STEP, "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [report["targets"][str(p)] for p in images] == [int(r["class_index"]) for r in rows]
    for record in log_lines(out.with_suffix(".jsonl")):
        p, _ = probabilities(Path(record["image"]))
        assert record["curves"]["deletion"][0] == pytest.approx(p[record["target"]], abs=1e-4)


def test_a_failing_pair_is_recorded_and_the_run_goes_on(tmp_path):
    """Class 275 has no positive Grad-CAM evidence on the cat photo (Grad-CAM refuses its all-zero map)."""
    labels = tmp_path / "labels.csv"
    labels.write_text("file,class_index\ncat.jpg,275\ncoffee.jpg,504\n")
    out = tmp_path / "e.json"
    args = ["evaluate", MODEL, *SAMPLES, "--labels", labels, "-m", "gradcam", "--metric", "gini", "--json", out]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "warning: cat.jpg gradcam:" in result.output and "1 (image, method) pair(s) failed" in result.output
    report = json.loads(out.read_text())
    assert [(Path(f["image"]).name, f["method"]) for f in report["failures"]] == [("cat.jpg", "gradcam")]
    assert report["n"]["gradcam"]["gini"] == 1 and report["n"]["random"]["gini"] == 2
    assert report["per_image"]["gradcam"][str(SAMPLES[0])]["gini"] is None
    again = cli(*args)  # the failure is recorded, so a resumed run does not retry it
    assert again.exit_code == 0 and "reusing 6 finished" in again.output and "warning:" not in again.output


def one_line_error(result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    text = result.output.strip()
    assert len(text.splitlines()) == 1 and text.startswith("error:"), text
    assert "Traceback" not in text
    for w in words:
        assert w in text, text


def test_bad_input(tmp_path):
    out = ["--json", tmp_path / "e.json"]
    one_line_error(cli("evaluate", MODEL, *out), 2, "IMAGES")
    one_line_error(cli("evaluate", MODEL, SAMPLES[0], "--metric", "delet", *out), 2, "did you mean deletion")
    one_line_error(cli("evaluate", MODEL, SAMPLES[0], "--metric", ",", *out), 2, "no metric")
    one_line_error(cli("evaluate", MODEL, SAMPLES[0], "-m", "gradcamm", *out), 2, "did you mean gradcam")
    one_line_error(cli("evaluate", MODEL, tmp_path / "none.jpg", *out), 1, "image not found")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,class_index\ncat.jpg,281\n")
    one_line_error(cli("evaluate", MODEL, *SAMPLES, "--labels", labels, *out), 1, "no row for image coffee.jpg")
    labels.write_text("name,label\ncat.jpg,281\n")
    one_line_error(cli("evaluate", MODEL, SAMPLES[0], "--labels", labels, *out), 1, "file,class_index")
    labels.write_text("file,class_index\ncat.jpg,tabby\n")
    one_line_error(cli("evaluate", MODEL, SAMPLES[0], "--labels", labels, *out), 1, "line 2", "not an integer")
    one_line_error(cli("evaluate", MODEL, SAMPLES[0], "--labels", tmp_path / "missing.csv", *out), 1, "not found")
    labels.write_text("file,class_index\ncat.jpg,5000\n")
    one_line_error(cli("evaluate", MODEL, SAMPLES[0], "--labels", labels, "--metric", "gini", *out), 1, "out of range")
    assert not list(tmp_path.glob("e.json*"))
    assert re.search(r"evaluate", cli("evaluate", "--help").output)


def test_npy_samples_with_labels_by_item_name(tmp_path):
    """A stack of preprocessed samples (the digits CNN takes (N, 1, 8, 8)) is scored sample by sample; the deletion
    curve starts at the softmax of the labelled class at the sample itself (a plain onnxruntime session)."""
    model = ROOT / "tests" / "fixtures" / "structured" / "standard.onnx"
    x = np.load(ROOT / "tests" / "fixtures" / "structured" / "digits_test.npy")[:3]
    labels = np.load(ROOT / "tests" / "fixtures" / "structured" / "digits_test_labels.npy")[:3]
    np.save(tmp_path / "digits.npy", x)
    (tmp_path / "labels.csv").write_text("file,class_index\n" + "".join(f"digits#{k}.npy,{c}\n"
                                                                       for k, c in enumerate(labels)))
    out = tmp_path / "eval.json"
    result = cli("evaluate", model, tmp_path / "digits.npy", "--labels", tmp_path / "labels.csv", "-m", "saliency",
                 "--metric", "deletion", "--deletion-step", "8", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [Path(p).name for p in report["images"]] == ["digits#0.npy", "digits#1.npy", "digits#2.npy"]
    logits = ort.InferenceSession(str(model)).run(None, {"input": x})[0]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = p[np.arange(3), labels] / p.sum(1)
    first = [r["curves"]["deletion"][0] for r in log_lines(out.with_suffix(".jsonl")) if r["method"] == "saliency"]
    np.testing.assert_allclose(first, p, atol=1e-5)


def test_signal_models_are_refused_in_one_line(tmp_path):
    result = cli("evaluate", ROOT / "models" / "side_channel_cnn.onnx", ROOT / "models" / "samples" / "traces.npy",
                 "-m", "saliency", "--json", tmp_path / "e.json")
    assert result.exit_code == 1 and "image models" in result.output and len(result.output.strip().splitlines()) == 1
