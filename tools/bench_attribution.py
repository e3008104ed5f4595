"""Benchmark input-level attributions: onnxcam's Integrated Gradients against Captum's, and the cost of I-GOS.

    python tools/bench_attribution.py                          # both sections, markdown on stdout
    python tools/bench_attribution.py --only ig --repeats 3    # sections: ig, igos
    python tools/bench_attribution.py --output docs/benchmarks-attribution.md

IG: torchvision ResNet-50 with seeded random weights (tests/zoo.py `build`: realistic BatchNorm statistics), eval,
legacy ONNX export (opset 17, dynamic batch, IR 8) cached in $TMPDIR/onnxcam-bench-attribution/. 8 seeded N(0, 1)
images 224×224, one fixed target class each, 50 steps, Gauss-Legendre, zero baseline: 400 path rows for both.
onnxcam adds forward-only rows: one per image (x itself: logits, top-1) and one for the shared baseline (the
completeness gap).
Both sides are tuned: a pilot on 1 image × 50 steps picks Captum's best `internal_batch_size` and onnxcam's best
`batch_size` (rows per run) by seconds per row; then the two best run the full problem in interleaved rounds (a
change of machine load hits both alike); the ratio of the medians and that of the fastest rounds are reported
(on a shared machine the fastest round is the least disturbed one).

I-GOS: the demo model (EfficientNet-Lite0) on one 224×224 photo (models/samples/cat.jpg), default settings
(28×28 mask, 15 iterations, 20 path points, λ1 = 1, λ2 = 20, path noise 0.2 in ImageNet-normalized units): wall
time, forward/backward rows, and the same in units of one plain forward pass of the model.

Threads: torch.set_num_threads(T); every ONNX Runtime session gets intra_op_num_threads = T and no spinning
(onnxcam's through Explainer(threads=T)).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import cpu_name, cpu_session, loadavg

ROOT = Path(__file__).resolve().parents[1]
SEED, SIZE, IMAGES, STEPS = 0, 224, 8, 50
TARGETS = [1, 100, 200, 300, 400, 500, 600, 700]
CAPTUM_BATCHES = (8, 16, 32)
ONNXCAM_BATCHES = (8, 16, 32)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def machine(threads: int) -> str:
    from importlib.metadata import version

    import onnxruntime as ort
    import torch

    cpu = cpu_name()
    return table(["machine", ""], [
        ["CPU", f"{cpu}, {os.cpu_count()} logical cores"],
        ["threads", f"torch.set_num_threads({threads}); ORT intra_op_num_threads={threads}, no spinning"],
        ["onnxruntime", f"{ort.__version__} (CPUExecutionProvider)"],
        ["torch / captum", f"{torch.__version__} / {version('captum')}"],
        ["load average (1/5/15 min) at start", loadavg()],
    ])


def timed(f) -> float:
    gc.collect()
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


# ---------------------------------------------------------------- IG on ResNet-50


def resnet50_export() -> tuple[object, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    import zoo

    folder = Path(tempfile.gettempdir()) / "onnxcam-bench-attribution"
    path = zoo.export("resnet50", "legacy", folder)
    import onnx

    assert onnx.load(str(path), load_external_data=False).ir_version == 8
    return zoo.build("resnet50"), path


def bench_ig(repeats: int) -> str:
    import torch
    from captum.attr import IntegratedGradients

    import onnxcam

    model, path = resnet50_export()
    x = torch.randn(IMAGES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(SEED))
    ex = onnxcam.Explainer(str(path), device="cpu", threads=THREADS)
    ig = IntegratedGradients(model)

    def run_onnxcam(n, batch):
        return ex.explain(x[:n].numpy(), method="ig", target=TARGETS[:n], steps=STEPS, batch_size=batch)

    def run_captum(n, batch):
        return ig.attribute(x[:n], target=TARGETS[:n], n_steps=STEPS, internal_batch_size=batch).detach().numpy()

    log("warm-up (sessions, graphs, arenas)")
    run_onnxcam(1, 8)
    run_captum(1, 8)
    pilot = []
    for batch in ONNXCAM_BATCHES:
        t = timed(lambda b=batch: run_onnxcam(1, b))
        pilot.append(("onnxcam", batch, t, STEPS))
        log(f"pilot onnxcam batch_size={batch}: {t:.1f} s")
    for batch in CAPTUM_BATCHES:
        t = timed(lambda b=batch: run_captum(1, b))
        pilot.append(("Captum", batch, t, STEPS))
        log(f"pilot Captum internal_batch_size={batch}: {t:.1f} s")
    best_o = min((p for p in pilot if p[0] == "onnxcam"), key=lambda p: p[2] / p[3])[1]
    best_c = min((p for p in pilot if p[0] == "Captum"), key=lambda p: p[2] / p[3])[1]

    times: dict[str, list[float]] = {"onnxcam": [], "Captum": []}
    results, rounds = {}, []
    for r in range(repeats):
        for name, f in (("onnxcam", lambda: run_onnxcam(IMAGES, best_o)), ("Captum", lambda: run_captum(IMAGES, best_c))):
            gc.collect()
            t = time.perf_counter()
            results[name] = f()
            times[name].append(time.perf_counter() - t)
            rounds.append([str(r + 1), name, f"{times[name][-1]:.1f}", loadavg().split()[0]])
            log(f"round {r + 1}/{repeats}: {name}: {times[name][-1]:.1f} s (load {loadavg()})")
    a, b = results["onnxcam"].attribution.astype(np.float64), results["Captum"].astype(np.float64)
    cos = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))
    med_o, med_c = statistics.median(times["onnxcam"]), statistics.median(times["Captum"])
    rows_o, forward_o = results["onnxcam"].extras["rows"]["gradient"], results["onnxcam"].extras["rows"]["forward"]
    pilot_table = table(["pilot: 1 image × 50 steps", "batch (rows per run)", "seconds", "seconds / row"],
                        [[n, str(bs), f"{t:.1f}", f"{t / k:.3f}"] for n, bs, t, k in pilot])
    main = table(
        ["IG, ResNet-50, 8 images × 50 steps", "batch", "rows", "median s", "min–max s", "s / row"],
        [["onnxcam (ORT CPU)", f"batch_size={best_o}", f"{rows_o} (+ {forward_o} forward)", f"{med_o:.1f}",
          f"{min(times['onnxcam']):.1f}–{max(times['onnxcam']):.1f}", f"{med_o / rows_o:.3f}"],
         ["Captum IntegratedGradients", f"internal_batch_size={best_c}", str(IMAGES * STEPS), f"{med_c:.1f}",
          f"{min(times['Captum']):.1f}–{max(times['Captum']):.1f}", f"{med_c / (IMAGES * STEPS):.3f}"]],
    )
    per_round = table(["round", "", "seconds", "load average (1 min) after"], rounds)
    return (f"{pilot_table}\n\n{main}\n\n{per_round}\n\n"
            f"**onnxcam is {med_c / med_o:.2f}× faster than Captum** (ratio of the medians of {repeats} interleaved "
            f"rounds; ratio of the fastest rounds: {min(times['Captum']) / min(times['onnxcam']):.2f}×; target ≥ 1.3×). "
            f"Attributions agree: cosine {cos:.6f}. Load average at the end: {loadavg()}.")


# ---------------------------------------------------------------- I-GOS on the demo model


def bench_igos(repeats: int) -> str:

    import onnxcam
    from onnxcam.image import Preprocessing, read_rgb

    model = ROOT / "models" / "efficientnet_lite0.onnx"
    x = Preprocessing((SIZE, SIZE), mean=(0.5,) * 3, std=(0.5,) * 3)(read_rgb(ROOT / "models" / "samples" / "cat.jpg"))[0]
    x = x[None]
    ex = onnxcam.Explainer(str(model), device="cpu", threads=THREADS)
    plain = cpu_session(model, THREADS)
    feed = {plain.get_inputs()[0].name: x}
    log("warm-up")
    plain.run(None, feed)
    ex.explain(x, method="igos", iterations=1, ig_steps=2)
    times, forward, result = [], [], None
    for r in range(repeats):
        forward.append(statistics.median(timed(lambda: plain.run(None, feed)) for _ in range(5)))
        gc.collect()
        t = time.perf_counter()
        result = ex.explain(x, method="igos")
        times.append(time.perf_counter() - t)
        log(f"round {r + 1}/{repeats}: I-GOS {times[-1]:.1f} s, plain forward {forward[-1] * 1000:.0f} ms (load {loadavg()})")
    rows = result.extras["rows"]
    t, f = statistics.median(times), statistics.median(forward)
    main = table(
        ["I-GOS, EfficientNet-Lite0, 1 image 224×224, defaults", "value"],
        [["wall time (median)", f"{t:.1f} s (min–max {min(times):.1f}–{max(times):.1f})"],
         ["forward+backward rows: initial / path / line search / total",
          f"{rows['initial']} / {rows['path']} / {rows['line_search']} / {rows['total']}"],
         ["seconds per row", f"{t / rows['total']:.3f}"],
         ["plain forward pass (ORT, batch 1)", f"{f * 1000:.0f} ms"],
         ["wall time in plain forward passes", f"{t / f:.0f}"],
         ["objective: first → last", f"{result.extras['objective'][0, 0]:.4f} → {result.extras['objective'][0, -1]:.4f}"],
         ["p_c: first → last", f"{result.extras['score'][0, 0]:.4f} → {result.extras['score'][0, -1]:.4f}"],
         ["accepted steps η", ", ".join(f"{e:g}" for e in result.extras["step"][0])],
         ["path noise σ per channel (model input space)", ", ".join(f"{v:.4f}" for v in result.extras["noise"])]],
    )
    return (f"{main}\n\nEvery row runs the gradient graph (the line-search candidates only need its logits; they run "
            "in the same graph, batched). Load average (1/5/15 min) at the end: " + loadavg() + ".")


THREADS = os.cpu_count() or 1


def main() -> None:
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="ig,igos", help="comma-separated sections: ig, igos")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timed rounds (median reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and ORT intra-op threads")
    parser.add_argument("--output", type=Path, help="also write the report (command + tables) to this markdown file")
    args = parser.parse_args()
    THREADS = args.threads

    import torch

    torch.set_num_threads(args.threads)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    command = "python tools/bench_attribution.py " + " ".join(sys.argv[1:])
    parts = ["# Benchmarks: input-level attributions", "", f"Command: `{command.strip()}`", "",
             machine(args.threads), ""]
    if "ig" in sections:
        parts += ["## Integrated Gradients: onnxcam vs Captum (ResNet-50, CPU)", "", bench_ig(args.repeats), ""]
    if "igos" in sections:
        parts += ["## I-GOS on the demo model (CPU)", "", bench_igos(args.repeats), ""]
    report = "\n".join(parts)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report + "\n")


if __name__ == "__main__":
    main()
