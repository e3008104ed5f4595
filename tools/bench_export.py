"""Benchmark exported explainer models (onnxcam.export) against plain inference of the same model.

    python tools/bench_export.py                        # batch 8, RSI-Grad-CAM with m = 8 steps, 5 rounds
    python tools/bench_export.py --steps 16 --rounds 7 --output docs/benchmarks-export.md

Section "export": the plain model, the exported Grad-CAM model and the exported RSI-Grad-CAM model (m steps),
each an onnxruntime.InferenceSession on the same provider with the same intra-op thread count, fed the same
batch. Targets: Grad-CAM ≤ 1.3× plain latency; RSI-Grad-CAM ≤ 1.3 × m × plain latency (its graph runs
(m + 1)·N rows: m path points and the input itself, which is the path's end). Also the file size ratios
(target ≤ 1.05: the weights appear once).

Model: torchvision ResNet-50 with seeded random weights (eval), legacy ONNX export (dynamic batch, opset 17,
IR 8), cached in $TMPDIR/onnxcam-bench-export/. Input: seeded N(0, 1) images, 224×224. Layer: "auto"
(the last ReLU of layer4).

Timing: each session is warmed up, then the configurations run in interleaved rounds (a change of machine
load hits them alike) and the median of the rounds is reported with the min–max range. Ratios are taken
between medians of the same run, so they stay meaningful on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from benchlib import cpu_name, cpu_session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SEED = 0
SIZE = 224


@dataclass
class Case:
    name: str
    session: object
    feeds: dict
    bound: float | None = None  # allowed ratio to the plain latency
    times: list[float] = field(default_factory=list)

    def run(self) -> float:
        t = time.perf_counter()
        self.session.run(None, self.feeds)
        return time.perf_counter() - t

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resnet50(cache: Path) -> Path:
    """ResNet-50 (seeded random weights), legacy exporter, dynamic batch, opset 17, IR 8; cached."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"resnet50_seed{SEED}_opset17_ir8.onnx"
    if path.exists():
        return path
    import onnx
    import torch
    import torchvision

    log(f"exporting ResNet-50 to {path}")
    torch.manual_seed(SEED)
    model = torchvision.models.resnet50(weights=None).eval()
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.randn(2, 3, SIZE, SIZE),), buf, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load_model_from_string(buf.getvalue())
    proto.ir_version = 8
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    onnx.save(proto, tmp)
    tmp.replace(path)
    return path


def machine(threads: int) -> str:
    import onnxruntime as ort

    cpu = cpu_name()
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, onnxruntime {ort.__version__} (CPUExecutionProvider, "
            f"intra_op_num_threads={threads})")


def section_export(args) -> str:
    import onnx

    import onnxcam

    folder = Path(tempfile.gettempdir()) / "onnxcam-bench-export"
    original = resnet50(folder)
    x = np.random.default_rng(SEED).standard_normal((args.batch, 3, SIZE, SIZE)).astype(np.float32)
    model = onnxcam.load_model(str(original))
    paths = {"plain": original}
    for key, method, opts in (("gradcam", "gradcam", {}), ("rsi", "rsi-gradcam", {"steps": args.steps})):
        t = time.perf_counter()
        proto = onnxcam.export(model, method, **opts)
        paths[key] = folder / f"resnet50_{key}{args.steps if key == 'rsi' else ''}.onnx"
        onnx.save(proto, paths[key])
        log(f"exported {method} in {time.perf_counter() - t:.1f} s -> {paths[key]}")
    m = args.steps
    cases = [
        Case("plain ResNet-50 inference", cpu_session(paths["plain"], args.threads), {"input": x}),
        Case("exported Grad-CAM (logits + heatmap + cam)", cpu_session(paths["gradcam"], args.threads), {"input": x}, 1.3),
        Case(f"exported RSI-Grad-CAM, m = {m} ({(m + 1) * args.batch} rows in one run)",
             cpu_session(paths["rsi"], args.threads), {"input": x}, 1.3 * m),
    ]
    for c in cases:  # warm-up: memory arenas, kernel selection
        c.run()
    load_before = os.getloadavg()
    for r in range(args.rounds):
        for c in cases:
            c.times.append(c.run())
        log(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{c.times[-1]:.2f} s" for c in cases))
    load_after = os.getloadavg()
    plain = cases[0].median
    rows = []
    for c in cases:
        ratio = c.median / plain
        paired = [t / p for t, p in zip(c.times, cases[0].times)]  # ratio within each round
        per_round = f"{statistics.median(paired):.2f} ({min(paired):.2f}–{max(paired):.2f})"
        if c.bound is None:
            verdict, shown = "", "1.00"
        elif c is cases[2]:
            shown = f"{ratio:.2f} = {ratio / m:.3f} × m"
            verdict = f"≤ 1.3 × m: {'yes' if ratio <= c.bound else 'NO'}"
        else:
            shown = f"{ratio:.2f}"
            verdict = f"≤ 1.3: {'yes' if ratio <= c.bound else 'NO'}"
        rows.append([c.name, f"{c.median:.3f}", f"{min(c.times):.3f}–{max(c.times):.3f}", shown, per_round, verdict])
    size = {k: p.stat().st_size for k, p in paths.items()}
    size_rows = [[k if k != "rsi" else f"rsi-gradcam (m = {m})", f"{size[k] / 1e6:.2f}", f"{size[k] / size['plain']:.4f}",
                  "" if k == "plain" else f"≤ 1.05: {'yes' if size[k] <= 1.05 * size['plain'] else 'NO'}"]
                 for k in paths]
    return "\n".join([
        f"### Latency, batch {args.batch}, {args.rounds} interleaved rounds (median; ratio to plain inference)",
        "",
        table(["configuration", "median s", "min–max s", "ratio of medians", "per-round ratio: median (min–max)",
               "target"], rows),
        "",
        "### File size",
        "",
        table(["model", "MB", "ratio to original", "target"], size_rows),
        "",
        f"Load average (1, 5, 15 min) before the rounds {tuple(round(v, 1) for v in load_before)}, "
        f"after {tuple(round(v, 1) for v in load_after)}.",
    ])


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="RSI-Grad-CAM steps m")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", type=Path, default=None, help="also write the report (markdown) here")
    args = parser.parse_args()
    command = "python tools/bench_export.py " + " ".join(sys.argv[1:])
    report = "\n".join([f"Command: `{command.strip()}`", "", f"Machine: {machine(args.threads)}", "",
                        section_export(args), ""])
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
