"""RSS added by each graph variant of one Explainer (a session each), with and without shared weights.

Each mode runs in a fresh subprocess: load ResNet-50 (random weights, tests/zoo.py export), then build and run one
row through the graphs the methods use, printing the RSS each adds.

    python tools/bench_memory.py [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tools")]


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(model: str, shared: bool) -> dict:
    """{variant: MB added}; `shared=False` gives every session its own weights, as before sharing."""
    import numpy as np

    import onnxcam
    import onnxcam.runner as runner

    if not shared:
        runner.SharedWeights = lambda proto: None
    ex = onnxcam.Explainer(model, device="cpu", threads=2)
    layer, image = ex.layer.name, ex.model.image_input
    x = np.random.default_rng(0).standard_normal((1, *ex.model.input_shape[1:])).astype(np.float32)
    variants = {"gradcam": ((layer,), "logit", (layer,)), "forward + layer (path methods' first rows)": ((), "logit", (layer,)),
                "rsi-gradcam rows (prob score)": ((layer,), "prob", (layer,)), "ig rows": ((image,), "logit", ())}
    out, before = {"load": rss_mb()}, rss_mb()
    for name, (wrt, score, expose) in variants.items():
        list(ex.session(wrt, score, expose).stream(lambda r: x[r], 1, np.array([1]), 1, list(expose)))
        out[name], before = rss_mb() - before, rss_mb()
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
    print("| graph variant | RSS added, one copy per session | RSS added, shared weights |")
    print("|---|---|---|")
    for name in [k for k in results["shared"] if k not in ("load", "weights")]:
        print(f"| {name} | {results['separate'][name]:.0f} MB | {results['shared'][name]:.0f} MB |")
    extra = [k for k in results["shared"] if k not in ("load", "weights", "gradcam")]
    for mode in ("separate", "shared"):
        total = sum(results[mode][k] for k in extra)
        print(f"{mode}: the three variants after the first add {total:.0f} MB = {total / weights:.1f}× the weights")


if __name__ == "__main__":
    main()
