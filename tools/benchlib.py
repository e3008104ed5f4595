"""What the benchmark scripts share: the machine's description and a realistic random ResNet."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_session(path: Path, threads: int):
    """A CPU session of a model file with onnxcam's thread count and ONNX Runtime's default spinning (the faster
    setting for back-to-back runs, as a plain inference loop is): the baseline every ratio divides by."""
    from onnxcam.runtime import make_session

    return make_session(path.read_bytes(), "cpu", threads, spin=True)


def calibrate_batchnorm(model, size: int, batch: int = 4) -> None:
    """BatchNorm statistics from two seeded noise batches, so random weights give activations of sane scale."""
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
        model.train()
        for _ in range(2):
            model(torch.randn(batch, 3, size, size, generator=g))
    model.eval()
