"""Cost of onnxcam's gradient graphs: build time, and ∂logit/∂input latency against plain inference and torch.

    python tools/bench_gradients.py [--threads N] [--batch 8] [--runs 10] [--warmup 3] [--profile RUNS]

Model: torchvision ResNet-50 with seeded random weights (torch.manual_seed(0), weights=None; BatchNorm
statistics measured on two batches of noise so activations have realistic scales), eval mode, exported
by the legacy exporter (opset 17, dynamic batch, IR 8) to $TMPDIR/onnxcam-bench-gradients/ (cached).

Measured, all on the CPU with the same number of threads N (default os.cpu_count()):
torch.set_num_threads(N) and ONNX Runtime intra_op_num_threads=N (inter_op 1, sequential execution, no
spinning of idle ORT threads, which would otherwise steal the cores from the interleaved torch runs):
  - build: onnxcam.gradient_model(file, wrt=[input]) (read, normalize, reverse sweep), median of 3;
  - ORT forward: the plain exported model, batch B;
  - ORT gradient: the gradient model (logits and ∂ logit[i, target_i] / ∂ input), batch B;
  - torch autograd: forward + torch.autograd.grad w.r.t. the input (parameters frozen, so neither side
    computes weight gradients), batch B; torch forward under no_grad for reference.
Each configuration is warmed up, then the configurations run in interleaved rounds (a change of machine
load hits them alike) and the median of the rounds is reported. Targets: build < 5 s, gradient/forward
≤ 2.5, torch/onnxcam > 1. --profile RUNS adds ONNX Runtime's per-op-type kernel time in the gradient model
(forward part vs onnxcam's gradient nodes), averaged over RUNS profiled runs.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from bench import cpu_counters, other_share  # tools/bench.py: other processes' CPU share from /proc/stat
from benchlib import calibrate_batchnorm, cpu_name

import onnxcam

INPUT, OUTPUT = "input", "logits"
SIZE = 224


def cpu_description() -> str:
    load = f" / load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{cpu_name()}, {os.cpu_count()} logical cores{load}"


def build_torch_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    calibrate_batchnorm(model, SIZE)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def export(model: torch.nn.Module, folder: Path) -> Path:
    path = folder / f"resnet50-legacy-torch{torch.__version__.replace('+', '_')}.onnx"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 3, SIZE, SIZE),), buffer, dynamo=False, opset_version=17,
                          input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    proto = onnx.load_model_from_string(buffer.getvalue())
    proto.ir_version = min(proto.ir_version, 10)  # onnx >= 1.23 writes IR 14; ORT 1.31 reads <= 13
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    onnx.save(proto, tmp)
    tmp.replace(path)
    return path


def session(model, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # no busy-waiting after a run: the spinning pool would steal the cores from the torch runs interleaved with it
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def profile(model: onnx.ModelProto, feeds: dict, threads: int, runs: int) -> None:
    """Print kernel time per (forward | gradient, op type), from ONNX Runtime's profiler, mean over runs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "onnxcam-bench-gradients-profile")
    options.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        s.run(None, feeds)
    trace = Path(s.end_profiling())
    spent: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            key = ("gradient" if event["name"].startswith("onnxcam_grad/") else "forward", event["args"]["op_name"])
            spent[key] += event["dur"] / runs
            nodes[key] += 1 / runs
    trace.unlink()
    total = sum(spent.values())
    print(f"\nONNX Runtime kernel time per op type in the gradient model, batch {len(feeds[INPUT])}, mean of {runs} runs")
    print("(ORT's layout reorders and fused forward nodes count as forward):\n")
    print("| part | op type | nodes | ms / run | share |")
    print("|---|---|---|---|---|")
    for (part, op), us in spent.most_common():
        if us / total >= 0.005:
            print(f"| {part} | {op} | {round(nodes[part, op])} | {us / 1e3:.0f} | {100 * us / total:.1f} % |")
    for part in ("forward", "gradient"):
        print(f"| **{part} total** | | | **{sum(v for k, v in spent.items() if k[0] == part) / 1e3:.0f}** | |")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, metavar="RUNS", help="also profile the gradient model")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "onnxcam-bench-gradients")
    args = parser.parse_args(argv)
    n, batch = args.threads, args.batch
    torch.set_num_threads(n)

    model = build_torch_model()
    path = export(model, args.cache)
    build_s = []
    for _ in range(3):
        start = time.perf_counter()
        grad_model = onnxcam.gradient_model(str(path), wrt=[INPUT], output=OUTPUT)
        build_s.append(time.perf_counter() - start)
    grad_model.ir_version = min(grad_model.ir_version, 10)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
    targets = rng.integers(0, 1000, batch)
    seed = np.zeros((batch, 1000), np.float32)
    seed[np.arange(batch), targets] = 1
    plain, grad = session(path, n), session(grad_model, n)
    xt = torch.from_numpy(x)

    def torch_grad():
        xg = xt.clone().requires_grad_()
        logits = model(xg)
        return torch.autograd.grad(logits[torch.arange(batch), torch.from_numpy(targets)].sum(), xg)[0]

    def torch_forward():
        with torch.no_grad():
            model(xt)

    configs = {
        "ORT forward": lambda: plain.run([OUTPUT], {INPUT: x}),
        "ORT gradient (onnxcam)": lambda: grad.run(None, {INPUT: x, "grad_seed": seed}),
        "torch forward (no_grad)": torch_forward,
        "torch forward + autograd.grad": torch_grad,
    }
    for fn in configs.values():
        for _ in range(args.warmup):
            fn()
    times = {name: [] for name in configs}
    others = {name: [] for name in configs}
    for _ in range(args.runs):
        for name, fn in configs.items():
            before = cpu_counters()
            times[name].append(timed(fn))
            share = other_share(before, cpu_counters(), times[name][-1])
            if share is not None:
                others[name].append(share)
    med = {name: statistics.median(t) for name, t in times.items()}

    ours = grad.run([onnxcam.grad_name(INPUT)], {INPUT: x, "grad_seed": seed})[0].ravel().astype(np.float64)
    ref = torch_grad().numpy().ravel().astype(np.float64)
    cos = ours @ ref / (np.linalg.norm(ours) * np.linalg.norm(ref))

    ratio_fwd = med["ORT gradient (onnxcam)"] / med["ORT forward"]
    ratio_torch = med["torch forward + autograd.grad"] / med["ORT gradient (onnxcam)"]
    print(f"Machine: {cpu_description()}; threads {n} (torch and ORT); batch {batch}; "
          f"median of {args.runs} rounds after {args.warmup} warm-up runs")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, onnx {onnx.__version__}; "
          f"ResNet-50 legacy export, {len(grad_model.graph.node)} nodes in the gradient model, "
          f"{grad_model.ByteSize() / 1e6:.1f} MB = {grad_model.ByteSize() / path.stat().st_size:.3f}× the exported file; "
          f"cosine(onnxcam, torch) = {cos:.7f}\n")
    print("| measurement | median | min–max | target | CPU used by other processes (median) |")
    print("|---|---|---|---|---|")
    print(f"| build gradient model (ResNet-50) | {statistics.median(build_s):.2f} s | "
          f"{min(build_s):.2f}–{max(build_s):.2f} s | < 5 s | |")
    for name, t in times.items():
        load = f"{100 * statistics.median(others[name]):.0f} %" if others[name] else "?"
        print(f"| {name}, batch {batch} | {med[name] * 1e3:.0f} ms | {min(t) * 1e3:.0f}–{max(t) * 1e3:.0f} ms | | "
              f"{load} |")
    print(f"| **gradient / forward** (ORT) | **{ratio_fwd:.2f}×** | | ≤ 2.5 | |")
    print(f"| **torch / onnxcam** (∂logit/∂input) | **{ratio_torch:.2f}×** | | > 1 | |")
    if args.profile:
        profile(grad_model, {INPUT: x, "grad_seed": seed}, n, args.profile)


if __name__ == "__main__":
    main()
