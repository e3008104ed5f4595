"""What `onnxcam explain` writes: atomic files inside --out only, never over an input, resumable after a kill."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from onnxcam.cli import main
from onnxcam.image import write_atomic
from onnxcam.outputs import remove_stale_parts, safe_stem

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLES = [ROOT / "models" / "samples" / "cat.jpg", ROOT / "models" / "samples" / "coffee.jpg"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_complete(out: Path, stems: list[str], methods=("gradcam",)) -> None:
    """Every visible file is whole: arrays load, PNGs decode, each record parses; no temp file is left."""
    assert not list(out.glob(".*.part")), list(out.glob(".*"))
    for stem in stems:
        for m in methods:
            assert np.load(out / f"{stem}_{m}.npy").ndim == 3
            assert cv2.imread(str(out / f"{stem}_{m}.png")) is not None
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(Path(r["image"]).stem for r in records) == sorted(stems)


def test_write_atomic_leaves_no_temp_file_and_normal_permissions(tmp_path, monkeypatch):
    write_atomic(tmp_path / "a.bin", b"x" * 10)
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    assert (tmp_path / "a.bin").stat().st_mode & 0o044  # readable by others (mkstemp alone gives 0600)

    def interrupted(src, dst):
        assert Path(src).name.startswith(".b.bin.") and src.endswith(".part") and Path(src).read_bytes() == b"y"
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "b.bin", b"y")
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_stale_temp_files_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".cat_gradcam.png.{dead.stdout.strip()}.abc123.part").write_bytes(b"half")
    (tmp_path / f".cat_gradcam.npy.{os.getppid()}.xyz789.part").write_bytes(b"writing")  # a live process
    (tmp_path / "cat_gradcam.png").write_bytes(b"kept")
    assert remove_stale_parts(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".cat_gradcam.npy.{os.getppid()}.xyz789.part",
                                                                 "cat_gradcam.png"])


@pytest.mark.parametrize("name,stem", [("..", "image"), ("../../x", "_.._x"), ("a b$c", "a_b_c"), (".hidden", "hidden"),
                                       ("猫", "猫"), ("x" * 300, "x" * 120), ("gradcam++", "gradcam++")])
def test_safe_stem(name, stem):
    assert safe_stem(name) == stem


def test_odd_image_names_stay_inside_out(model, tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    names = ["a b$c.jpg", "-rf.jpg", "..jpg", "x" * 200 + ".jpg", "café.jpg"]
    for n in names:
        shutil.copy(SAMPLES[0], images / n)
    out = tmp_path / "out"
    result = cli("explain", model, *[images / n for n in names], "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]
    assert sorted(p.name for p in images.iterdir()) == sorted(names)  # nothing written next to the inputs
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 2 * len(names) + 1 and not any(n.startswith(".") for n in written)
    assert all(len(n.encode()) < 200 for n in written)


def test_images_with_the_same_stem_get_distinct_outputs(model, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(SAMPLES[0], tmp_path / folder / "cat.jpg")
    result = cli("explain", model, tmp_path / "a" / "cat.jpg", tmp_path / "b" / "cat.jpg", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "out").glob("cat-*_gradcam.png"))
    assert len(pngs) == 2


def test_output_over_an_input_image_is_refused(model, tmp_path):
    shutil.copy(SAMPLES[0], tmp_path / "cat.jpg")
    shutil.copy(SAMPLES[1], tmp_path / "cat_gradcam.png")  # an input named like an output of cat.jpg
    before = (tmp_path / "cat_gradcam.png").read_bytes()
    result = cli("explain", model, tmp_path / "cat.jpg", tmp_path / "cat_gradcam.png", "--out", tmp_path)
    assert result.exit_code == 1 and "would overwrite the input" in result.stderr and "cat_gradcam.png" in result.stderr
    assert (tmp_path / "cat_gradcam.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.jpg", "cat_gradcam.png"]


def test_rerun_skips_complete_images_and_redoes_changed_settings(model, tmp_path):
    out = tmp_path / "out"
    assert cli("explain", model, *SAMPLES, "--out", out).exit_code == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    time.sleep(0.01)
    again = cli("explain", model, *SAMPLES, "--out", out)
    assert again.exit_code == 0 and "skipping 2 image(s)" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == first
    (out / "coffee_gradcam.npy").unlink()  # an incomplete image is redone, the complete one skipped
    partial = cli("explain", model, *SAMPLES, "--out", out)
    assert "skipping 1 image(s)" in partial.stderr and (out / "coffee_gradcam.npy").is_file()
    other = cli("explain", model, *SAMPLES, "--out", out, "--target", "3")  # other settings: recomputed
    assert other.exit_code == 0 and "skipping" not in other.stderr
    assert len((out / "results.jsonl").read_text().splitlines()) == 5


def test_torn_results_line_is_repaired(model, tmp_path):
    out = tmp_path / "out"
    assert cli("explain", model, SAMPLES[0], "--out", out).exit_code == 0
    with open(out / "results.jsonl", "a") as f:
        f.write('{"image": "half a rec')  # what a kill in the middle of a write would leave
    assert cli("explain", model, SAMPLES[1], "--out", out).exit_code == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [Path(r["image"]).stem for r in records] == ["cat", "coffee"]


def test_killed_run_leaves_complete_files_and_the_rerun_finishes_the_rest(tmp_path):
    """SIGKILL halfway through 20 images: only whole files are visible; the re-run skips what is done."""
    images = []
    for k in range(20):
        images.append(tmp_path / "in" / f"img{k:02d}_{SAMPLES[k % 2].stem}.jpg")
        images[-1].parent.mkdir(exist_ok=True)
        shutil.copy(SAMPLES[k % 2], images[-1])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "onnxcam", "explain", str(DEMO), *map(str, images), "--out", str(out)]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        results = out / "results.jsonl"
        if results.is_file() and results.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    done = [json.loads(line)["image"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert 3 <= len(done) < 20
    visible = [p for p in out.iterdir() if not p.name.startswith(".")]
    for p in visible:  # whole files only: every array loads and every PNG decodes
        if p.suffix == ".npy":
            assert np.load(p).shape == (1, 7, 7)
        elif p.suffix == ".png":
            assert cv2.imread(str(p)) is not None
    before = {p.name: p.stat().st_mtime_ns for p in visible}

    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipping {len(done)} image(s)" in rerun.stderr
    assert f"wrote {20 - len(done)} image(s)" in rerun.stdout
    assert_complete(out, [p.stem for p in images])
    for image in done:  # the earlier images were not recomputed
        stem = Path(image).stem
        for name in (f"{stem}_gradcam.npy", f"{stem}_gradcam.png"):
            assert (out / name).stat().st_mtime_ns == before[name]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
