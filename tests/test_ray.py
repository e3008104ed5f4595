"""onnxcam.ray on a local Ray instance (2 CPUs, 2 workers): the maps of the in-process path, exactly-once output
after an interrupted run and after a worker dies, per-item errors, Dataset sources, evaluate, and the CLI's --ray.

One Ray instance for the module; the bulk checks use the fuzzer's 32x32 CNN, so each run costs seconds.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="onnxcam[ray] is not installed")
pytest.importorskip("pyarrow")

import pyarrow.parquet as pq  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import onnxcam  # noqa: E402
from onnxcam import Explainer  # noqa: E402
from onnxcam import evaluate as ev  # noqa: E402
from onnxcam import ray as onnxcam_ray  # noqa: E402
from onnxcam.cli import main  # noqa: E402
from onnxcam.image import model_preprocessing, read_rgb  # noqa: E402
from onnxcam.opencv import cv2  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGENET = ROOT.parent / "shared" / "data" / "imagenet-sample"
N = 40
FAST = {"concurrency": 2, "batch_images": 4}  # 10 chunks over 2 actors


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    """40 photos: the ImageNet sample when ../shared has it, else crops and flips of the shipped samples."""
    found = sorted([*IMAGENET.glob("*.JPEG"), *IMAGENET.glob("*.jpg")])[:N] if IMAGENET.is_dir() else []
    if len(found) == N:
        return [str(p) for p in found]
    folder = tmp_path_factory.mktemp("images")
    sources = [cv2.imread(str(p)) for p in sorted((ROOT / "models" / "samples").glob("*.jpg"))]
    for i in range(N):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        top, left = (i * 7) % (h // 3), (i * 11) % (w // 3)
        crop = img[top : top + h * 2 // 3, left : left + w * 2 // 3]
        cv2.imwrite(str(folder / f"img{i:02d}.jpg"), cv2.flip(crop, 1) if i % 2 else crop)
    return sorted(str(p) for p in folder.glob("*.jpg"))


@pytest.fixture(scope="module")
def reference(model):
    """The in-process path: same preprocessing, one ORT thread as each worker."""
    ex = Explainer(model, threads=1)
    prep = model_preprocessing(ex.model)

    def explain(path: str, method: str, **options):
        x, _ = prep(read_rgb(path))
        return ex.explain(x[None], method=method, **options), ex, x[None]

    return explain


def raw_rows(out: Path, kind: str = "explain") -> list[dict]:
    """Every row of every part file, without read_results' dedupe: what was written."""
    return [r for f in sorted(out.glob(f"{kind}-*.parquet")) for r in pq.read_table(f).to_pylist()]


def assert_exactly_once(out: Path, paths: list[str], methods: list[str]) -> list[dict]:
    rows = raw_rows(out)
    pairs = sorted((r["file"], r["method"]) for r in rows)
    assert pairs == sorted((p, m) for p in paths for m in methods)
    assert not list(out.glob(".*.part"))
    return rows


def test_maps_equal_the_in_process_path_and_a_bad_image_is_one_row(model, images, reference, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all\n")
    out = tmp_path / "out"
    r = onnxcam_ray.explain_dataset([*images, str(bad)], model, ["gradcam", "ig"], out, steps=8, overlays=True, **FAST)
    assert (r.computed, r.failed, r.skipped) == (N + 1, 1, 0)
    rows = onnxcam_ray.read_results(out, settings_key=r.settings_key).to_pylist()
    assert len(rows) == 2 * (N + 1)
    for row in rows:
        if row["file"] == str(bad):
            assert "cannot read image" in row["error"] and row["map"] is None
            continue
        res, _, _ = reference(row["file"], row["method"], **({"steps": 8} if row["method"] == "ig" else {}))
        expected = res.cam if res.cam is not None else res.heatmap
        np.testing.assert_array_equal(onnxcam_ray.load_map(row), expected[0])
        assert row["error"] is None and row["target"] == int(res.target[0])
        assert row["top5"][0]["class"] == int(np.argmax(res.logits[0]))
        assert (out / row["overlay"]).is_file()
    again = onnxcam_ray.explain_dataset([*images, str(bad)], model, ["gradcam", "ig"], out, steps=8, **FAST)
    assert (again.computed, again.skipped) == (0, N + 1)  # the error is recorded, not retried


def test_a_run_stopped_halfway_resumes_with_every_item_exactly_once(model, images, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "stopped"
    with pytest.raises(onnxcam.OnnxcamError, match="test hook: the run stops.*a re-run resumes"):
        onnxcam_ray.explain_dataset(images, model, ["gradcam"], out, _test_hook=("raise", Path(images[N // 2]).name,
                                                                                str(marker)), **FAST)
    first = len(raw_rows(out))
    print(f"rows before the stop: {first} of {N}")
    assert marker.is_file() and first < N  # the chunk that failed wrote nothing
    r = onnxcam_ray.explain_dataset(images, model, ["gradcam"], out, **FAST)
    assert (r.computed, r.skipped) == (N - first, first)
    assert_exactly_once(out, images, ["gradcam"])


def test_a_worker_that_dies_is_retried_and_nothing_is_lost_or_doubled(model, images, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "died"
    victim = Path(images[N // 2 + 1]).name
    hook = ("exit", victim, str(marker))
    r = onnxcam_ray.explain_dataset(images, model, ["gradcam", "gradcam++"], out, _test_hook=hook, **FAST)
    assert marker.is_file(), "the worker did not die"
    assert (r.computed, r.failed) == (N, 0)
    rows = assert_exactly_once(out, images, ["gradcam", "gradcam++"])
    assert all(r["error"] is None for r in rows)


def test_a_dataset_of_encoded_bytes(model, images, reference, tmp_path):
    ds = ray.data.read_binary_files(images[:8], include_paths=True).materialize()  # read first: both CPUs go to actors
    r = onnxcam_ray.explain_dataset(ds, model, ["gradcam"], tmp_path, **FAST)
    rows = onnxcam_ray.read_results(tmp_path, settings_key=r.settings_key).to_pylist()
    assert sorted(Path(row["file"]).name for row in rows) == sorted(Path(p).name for p in images[:8])
    for row in rows:
        res, _, _ = reference(str(Path(images[0]).parent / Path(row["file"]).name), "gradcam")
        np.testing.assert_array_equal(onnxcam_ray.load_map(row), res.cam[0])


def test_evaluate_gives_the_in_process_metrics_and_the_summary_from_parquet(model, images, reference, tmp_path):
    metrics, params = ["deletion", "gini"], {"step": 128, "batch_size": None, "seed": 0}
    r = onnxcam_ray.evaluate_dataset(images[:6], model, ["gradcam"], tmp_path / "eval", metrics=metrics, deletion_step=128,
                                     **FAST)
    rows = onnxcam_ray.read_results(tmp_path / "eval", "evaluate", r.settings_key).to_pylist()
    assert sorted(r["method"] for r in rows) == sorted(["gradcam", "random", "center"] * 6)
    per_image: dict = {m: {} for m in ("gradcam", "random", "center")}
    for row in rows:
        _, ex, x = reference(row["file"], "gradcam")
        got = ev.evaluate_pair(ex, x, row["method"], ev.predicted_class(ex, x), metrics, {}, params)
        assert row["target"] == got["target"] and row["requested"] is None
        for k in metrics:
            assert row[k] == pytest.approx(got["values"][k], rel=1e-6, abs=1e-9)
        per_image[row["method"]][row["file"]] = got["values"]
    expected = ev.summarize(per_image, metrics, {})
    for m in per_image:
        for k in metrics:
            assert r.summary["methods"][m][k] == pytest.approx(expected["methods"][m][k], rel=1e-6)
    assert (tmp_path / "eval" / "summary.json").is_file() and "gradcam" in r.table


def test_the_cli_runs_a_folder_with_ray(model, images, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images[:4]:
        (folder / Path(p).name).write_bytes(Path(p).read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["explain", str(model), str(folder), "--out", str(out), "--ray"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 image(s) x 1 method(s)" in result.output and len(onnxcam_ray.read_results(out)) == 4
    summary = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["evaluate", str(model), str(folder), "--metric", "gini", "--json", str(summary),
                                       "--ray"])
    assert result.exit_code == 0, result.output
    assert "gradcam" in result.output and summary.is_file() and (tmp_path / "eval.parquet").is_dir()


def test_without_ray_installed_the_command_says_what_to_install(model, images, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "onnxcam.ray")
    monkeypatch.delattr(onnxcam, "ray")
    result = CliRunner().invoke(main, ["explain", str(model), images[0], "--ray"])
    assert result.exit_code == 1 and "pip install 'onnxcam[ray]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_folder_without_ray_is_still_bad_usage(model, tmp_path):
    result = CliRunner().invoke(main, ["explain", str(model), str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.output
