"""What pip installs, and what importing onnxcam does to its host process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pip_would_install(target: str, tmp_path: Path) -> set[str]:
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
                    str(report), target], cwd=ROOT, check=True, capture_output=True)
    return {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}


def test_base_install_pulls_the_cpu_runtime_and_the_gpu_extra_the_gpu_runtime(tmp_path):
    base = pip_would_install(".", tmp_path)
    assert "onnxruntime" in base and "onnxruntime-gpu" not in base
    assert "onnxruntime-gpu" in pip_would_install(".[gpu]", tmp_path)


def test_import_leaves_environment_and_umask_alone():
    code = ("import os, json; before = dict(os.environ); mask = os.umask(0o027); import onnxcam, onnxcam.cli; "
            "after = os.umask(0o022); print(json.dumps([before == dict(os.environ), oct(after)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [True, "0o27"]


@pytest.fixture
def second_runtime(tmp_path) -> dict:
    """An environment where onnxruntime-gpu's metadata sits beside the installed onnxruntime."""
    info = tmp_path / "onnxruntime_gpu-1.20.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.20.0\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_two_runtimes_side_by_side_are_refused_at_import(second_runtime):
    result = subprocess.run([sys.executable, "-c", "import onnxcam"], capture_output=True, text=True, env=second_runtime)
    assert result.returncode == 1 and "onnxruntime and onnxruntime-gpu are installed side by side" in result.stderr


def test_two_runtimes_side_by_side_are_one_line_from_the_command(second_runtime):
    command = Path(sys.executable).with_name("onnxcam")
    result = subprocess.run([str(command), "info", "x.onnx"], capture_output=True, text=True, env=second_runtime)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in result.stderr
