"""Session fixtures: torchvision models exported to ONNX once per session (see zoo.py), and the fuzzer's small CNN."""

import os
import sys
from pathlib import Path

import onnx
import pytest
import zoo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from fuzz import small_cnn  # noqa: E402  (a real 32x32 CNN, 10 classes)


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory) -> Path:
    """Where exports are cached: $ONNXCAM_TEST_CACHE (kept across runs) or a fresh folder for this session."""
    folder = os.environ.get("ONNXCAM_TEST_CACHE")
    if not folder:
        return tmp_path_factory.mktemp("zoo")
    path = Path(folder).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def zoo_export(zoo_dir):
    """zoo_export(name, exporter, static_batch=None) -> path of the cached ONNX export."""

    def get(name: str, exporter: str, static_batch: int | None = None) -> Path:
        return zoo.export(name, exporter, zoo_dir, static_batch)

    return get


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> Path:
    """The small CNN saved once: the CLI tests' model, where each refusal costs milliseconds."""
    path = tmp_path_factory.mktemp("model") / "small.onnx"
    onnx.save(small_cnn(), path)
    return path


@pytest.fixture
def per_row_engine(monkeypatch):
    """One-row CAMs computed by the engine's per-row path (numpy reductions) instead of the exporter's whole-method
    graph they otherwise run as: tests comparing an export with the Explainer then compare two computations."""
    from onnxcam.methods import run

    monkeypatch.setattr(run._Run, "whole_map_session", lambda self: None)
