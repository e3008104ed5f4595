"""RSS added by each method's graph variants (an ONNX Runtime session each) in one Explainer, with and without shared
weights.

Each mode runs in a fresh subprocess: load ResNet-50 (random weights, tests/zoo.py export), then explain one image
with Grad-CAM, RSI-Grad-CAM, Integrated Gradients and RSI-Grad-CAM along the activation path, one row per run,
printing the RSS each call adds once its sessions exist (after collecting garbage and trimming the heap).

    python tools/bench_memory.py [--model PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tools")]
CALLS = {"gradcam": ("gradcam", {}), "rsi-gradcam": ("rsi-gradcam", {"steps": 8}), "ig": ("ig", {"steps": 8}),
         "rsi-gradcam, path='activation'": ("rsi-gradcam", {"steps": 8, "path": "activation"})}


def rss_mb() -> float:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(model: str, shared: bool) -> dict:
    """{method: [MB added, sessions after]}; `shared=False` gives every session its own weights, as before sharing."""
    import numpy as np

    import onnxcam
    import onnxcam.runner as runner

    if not shared:
        runner.SharedWeights = lambda proto: None
    ex = onnxcam.Explainer(model, device="cpu", threads=2)
    x = np.random.default_rng(0).standard_normal((1, *ex.model.input_shape[1:])).astype(np.float32)
    out, before = {}, rss_mb()
    for label, (method, options) in CALLS.items():
        try:
            ex.explain(x, method=method, batch_size=1, **options)
        except onnxcam.OnnxcamError:  # random weights can give a flat map; the sessions are built all the same
            pass
        out[label], before = [rss_mb() - before, len(ex._sessions)], rss_mb()
    out["weights"] = sum(int(np.prod(t.dims)) * 4 for t in ex.model.proto.graph.initializer) / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="an ONNX file (default: ResNet-50, random weights)")
    parser.add_argument("--mode", choices=["shared", "separate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.model, args.mode == "shared")))
        return
    import benchlib

    model = args.model
    if model is None:
        import zoo

        model = str(zoo.export("resnet50", "legacy", Path.home() / ".cache" / "onnxcam-bench", None))
    results = {mode: json.loads(subprocess.run([sys.executable, __file__, "--model", model, "--mode", mode],
                                               check=True, capture_output=True, text=True).stdout.splitlines()[-1])
               for mode in ("separate", "shared")}
    weights = results["shared"]["weights"]
    print(f"{Path(model).name}: weights {weights:.0f} MB; {benchlib.cpu_name()}, load {benchlib.loadavg()}")
    print("| call (in this order) | sessions after it | RSS added, one copy per session | RSS added, shared weights |")
    print("|---|---|---|---|")
    for name in CALLS:
        print(f"| {name} | {results['shared'][name][1]} | {results['separate'][name][0]:.0f} MB | "
              f"{results['shared'][name][0]:.0f} MB |")
    for mode in ("separate", "shared"):
        total = sum(results[mode][k][0] for k in list(CALLS)[1:])
        print(f"{mode}: the three calls after Grad-CAM add {total:.0f} MB = {total / weights:.1f}× the weights")


if __name__ == "__main__":
    main()
