"""Benchmark onnxcam against plain inference, pytorch-grad-cam, Captum and a one-step-at-a-time loop.

Everything is measured side by side in one process (memory: one fresh subprocess per configuration),
on the same machine, with the same thread count for PyTorch and ONNX Runtime:

    python tools/bench.py                          # all sections; ≈ 6 min on an idle 2-core machine
    python tools/bench.py --only gradcam,rsi       # sections: batch1, gradcam, rsi, profile, memory, spinning
    python tools/bench.py --full                   # 8 images in every section; ≈ 15 min idle (estimate)
    python tools/bench.py --wait-quiet 60          # on a shared machine: wait for idle CPUs before each timed run
    python tools/bench.py --only rsi --activation-path   # also time path="activation" (a different sum)

The default run times Grad-CAM on 8 images, but RSI-Grad-CAM on 2 images × 51 points (102 rows) and the
reference loop on 1 image (scaled ×2), and the memory section on 1 image: path methods cost the same
per row whatever the image count, and a shared 2-core machine can be 3–6× slower than an idle one.

RSI-Grad-CAM runs with baseline=0.0 (BASELINE), the baseline Captum and the reference loop use, so all
three compute the same sum.

Model: torchvision ResNet-50 with seeded random weights (eval), legacy ONNX export (dynamic batch,
opset 17, IR 8), cached in $TMPDIR/onnxcam-bench/. Inputs: seeded N(0, 1) images, 224×224.

Threads: torch.set_num_threads(T); every ONNX Runtime session (the plain one and the ones onnxcam
makes) gets intra_op_num_threads = T, onnxcam's through Explainer(threads=T). (ORT's own default is one thread per
physical core.) The plain-inference baseline keeps ORT's default spinning (the faster setting for back-to-back
runs), as do onnxcam's one-row CAM graphs, which run alone call after call; onnxcam's other sessions, which
alternate, do not spin (section "spinning" shows why).

Timing: each configuration is warmed up (session creation, memory arenas, oneDNN primitives), then
all configurations of a section run in interleaved rounds (so a change of machine load hits them
alike) and the median of the rounds is reported, with the min–max range. ONNX Runtime's
InferenceSession.run is wrapped by a timer, so onnxcam rows also show how much of their time is
spent inside ORT and how much in Python (row building, accumulation in methods/path.py, maps).

Shared machines: other processes' CPU use during every timed run is measured (/proc/stat) and shown
next to the times; --wait-quiet SECONDS makes each timed run wait for a quiet machine first.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from benchlib import cpu_name, cpu_session, loadavg

SECTIONS = ("batch1", "gradcam", "rsi", "profile", "memory", "spinning")
DEMO = Path(__file__).resolve().parents[1] / "models" / "efficientnet_lite0.onnx"
SEED = 0
SIZE = 224
# Captum LayerConductance peak RSS, measured here (ResNet-50, 224×224, 2 images): 5.1 GB at internal_batch_size 16,
# 9.0 GB at 32, 9.6 GB at 64. A configuration is skipped when 1 GB + 150 MB × rows exceeds 70 % of MemAvailable.
TORCH_BYTES_PER_ROW = 150e6
BASELINE = 0.0  # RSI baseline in the model's input space: what Captum (baselines=0.0) and the reference loop use


# ---------------------------------------------------------------- timing and reporting


class OrtTimer:
    """Wraps onnxruntime's InferenceSession.run once; `total` is the seconds spent inside run()."""

    total = 0.0
    installed = False

    @classmethod
    def install(cls) -> None:
        if cls.installed:
            return
        from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession

        original = InferenceSession.run

        @functools.wraps(original)
        def run(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                cls.total += time.perf_counter() - t

        InferenceSession.run = run
        cls.installed = True


@dataclass
class Case:
    name: str
    run: Callable[[], object]
    warmup: Callable[[], object] | None = None
    settle: Callable[[], object] | None = None  # untimed before each timed run (see section_batch1)
    scale: float = 1.0  # multiply measured times (e.g. loop timed on fewer images)
    keep: bool = False  # keep what the last timed run returned (Captum's result holds its autograd graph: don't)
    times: list[float] = field(default_factory=list)
    ort: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)  # CPU share taken by other processes during each run
    result: object = None  # what the last timed run returned

    @property
    def median(self) -> float:
        return statistics.median(self.times) * self.scale

    @property
    def span(self) -> str:
        return f"{min(self.times) * self.scale:.2f}–{max(self.times) * self.scale:.2f}"

    @property
    def ort_share(self) -> float:
        return statistics.median(o / t for o, t in zip(self.ort, self.times))

    @property
    def other_load(self) -> str:
        return f"{100 * statistics.median(self.other):.0f} %" if self.other else "?"


def cpu_counters() -> tuple[float, float] | None:
    """(seconds all CPUs were busy, seconds this process ran) since boot / start, from /proc/stat and os.times()."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    t = os.times()
    return busy, t.user + t.system


def other_share(before, after, wall: float) -> float | None:
    """Fraction of all cores that other processes kept busy between two cpu_counters() samples."""
    if before is None or after is None or wall <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others / (wall * (os.cpu_count() or 1)))


OTHERS = "CPU used by other processes"
QUIET: tuple[float, float] | None = None  # (max other-process CPU share, max seconds to wait), see --wait-quiet


def wait_quiet() -> None:
    """Before a timed run, wait (up to QUIET[1] s) until other processes use at most QUIET[0] of the CPUs."""
    if QUIET is None:
        return
    limit, patience = QUIET
    deadline = time.monotonic() + patience
    while True:
        a = cpu_counters()
        time.sleep(2.0)
        share = other_share(a, cpu_counters(), 2.0)
        if share is None or share <= limit:
            return
        if time.monotonic() > deadline:
            log(f"  machine still busy (others use {100 * share:.0f} % of the CPUs); running anyway")
            return
        log(f"  waiting for a quiet machine (others use {100 * share:.0f} % of the CPUs)")
        time.sleep(8.0)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(cases: list[Case], repeats: int) -> None:
    """Warm every case up, then run them in `repeats` interleaved rounds."""
    for c in cases:
        log(f"warm-up: {c.name}")
        t = time.perf_counter()
        (c.warmup or c.run)()
        log(f"  {time.perf_counter() - t:.1f} s")
        release_memory()
    for r in range(repeats):
        for c in cases:
            wait_quiet()
            if c.settle is not None:
                c.settle()
            o = OrtTimer.total
            cpu = cpu_counters()
            t = time.perf_counter()
            result = c.run()
            c.times.append(time.perf_counter() - t)  # untimed: dropping the result (Captum's frees its autograd graph)
            share = other_share(cpu, cpu_counters(), c.times[-1])
            if share is not None:
                c.other.append(share)
            c.result = result if c.keep else None
            del result
            c.ort.append(OrtTimer.total - o)
            release_memory()
            log(f"round {r + 1}/{repeats}: {c.name}: {c.times[-1]:.2f} s (ORT {c.ort[-1]:.2f} s, "
                f"others {100 * (share or 0):.0f} % CPU)")


def release_memory() -> None:
    """Between timed runs (untimed): collect garbage and hand freed heap back to the OS, so the bench's
    resident size between Captum runs (which peak at ~9 GB) does not squeeze the rest of a shared machine."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ort_column(c: Case) -> str:
    return f"{100 * c.ort_share:.0f} %" if any(c.ort) else "–"


# ---------------------------------------------------------------- machine, model, inputs


def machine(threads: int) -> str:
    import onnx
    import onnxruntime as ort
    import torch

    cpu = cpu_name()
    mem = "?"
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    import captum

    return table(
        ["machine", ""],
        [
            ["CPU", f"{cpu}, {os.cpu_count()} logical cores"],
            ["memory", mem],
            ["threads", f"torch.set_num_threads({threads}); ORT intra_op_num_threads={threads}; threads spin between "
                        "runs in the plain-inference baseline and in one-row CAM graphs, not in other sessions"],
            ["python", platform.python_version()],
            ["onnxruntime", f"{ort.__version__} (CPUExecutionProvider)"],
            ["torch / torchvision", f"{torch.__version__} / {version('torchvision')}"],
            ["onnx", onnx.__version__],
            ["grad-cam / captum", f"{version('grad-cam')} / {captum.__version__}"],
            ["load average at start", loadavg()],
        ],
    )


def torch_model():
    import torch
    import torchvision

    torch.manual_seed(SEED)
    return torchvision.models.resnet50(weights=None).eval()


def exported_model(cache: Path) -> Path:
    """ResNet-50 (seeded random weights), legacy exporter, dynamic batch, opset 17, IR 8; cached."""
    import onnx
    import torch

    path = cache / f"resnet50_seed{SEED}_opset17_ir8.onnx"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    log(f"exporting ResNet-50 to {path}")
    tmp = path.with_suffix(".tmp")
    torch.onnx.export(
        torch_model(), torch.zeros(1, 3, SIZE, SIZE), str(tmp), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    proto = onnx.load(str(tmp))
    proto.ir_version = 8
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


def images(n: int) -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal((n, 3, SIZE, SIZE), dtype=np.float32)


def onnxcam_explainer(path: Path, threads: int):
    """An Explainer whose sessions get `threads` intra-op threads (see the module docstring)."""
    import onnxcam

    return onnxcam.Explainer(str(path), device="cpu", threads=threads)


# ---------------------------------------------------------------- reference loop (torch)


def reference_loop(model, layer, x, targets, steps: int, authors: bool = True) -> np.ndarray:
    """The reference code's one-step-at-a-time loop in torch: for each image and each i = 0..m, forward
    x_i = (i/m)·x (black baseline 0) at batch 1, take G_i = ∂softmax_c/∂A, add
    ½(ReLU(G_{i−1}) + ReLU(G_i))·(A_i − A_{i−1}); w_k = mean_ij R^k, cam = ReLU(mean_k w_k A^k(x)).

    authors=True does it as the authors' notebook (mlerma54/RSIGradCAM, RSI_Grad_CAM_PyTorch_w_ResNet50.ipynb,
    compute_heatmap): the parameters require grad (torchvision's default; the notebook sets it too) and each point
    calls loss.backward(), a full backward pass that also fills every parameter's .grad, with G read by a tensor
    hook. authors=False is the lean loop a careful user would write instead: torch.autograd.grad(prob, A), which
    stops at the layer."""
    import torch

    store = {}

    def hook(module, inputs, output):
        store["a"] = output
        if authors:
            output.register_hook(lambda g: store.__setitem__("g", g))

    handle = layer.register_forward_hook(hook)
    cams = []
    try:
        for img, c in zip(x, targets):
            total, prev_a, prev_g = 0.0, None, None
            for i in range(steps + 1):
                xi = (i / steps) * torch.from_numpy(img[None])
                prob = torch.softmax(model(xi), dim=-1)[:, int(c)]
                if authors:
                    prob.backward()
                    g = store["g"]
                else:
                    (g,) = torch.autograd.grad(prob.sum(), store["a"])
                a, g = store["a"].detach()[0], torch.relu(g[0])
                if prev_a is not None:
                    total = total + 0.5 * (prev_g + g) * (a - prev_a)
                prev_a, prev_g = a, g
            w = total.mean(dim=(1, 2))
            cams.append(torch.relu((w[:, None, None] * prev_a).mean(0)).numpy())
    finally:
        handle.remove()
        for p in model.parameters():
            p.grad = None
    return np.stack(cams)


# ---------------------------------------------------------------- sections


def section_gradcam(args, path: Path, out: list[str]) -> None:
    import torch
    from pytorch_grad_cam import GradCAM

    n = args.images
    x = images(n)
    xt = torch.from_numpy(x)
    plain = cpu_session(path, args.threads)
    ex = onnxcam_explainer(path, args.threads)
    model = torch_model()
    pgc = GradCAM(model=model, target_layers=[model.layer4[-1]])

    logits_ort = plain.run(None, {"input": x})[0]
    with torch.no_grad():
        logits_torch = model(xt).numpy()
    ours = ex.explain(x, method="gradcam")
    theirs = pgc(input_tensor=xt, targets=None)

    cases = [
        Case("plain ORT inference (original model)", lambda: plain.run(None, {"input": x})),
        Case('onnxcam Grad-CAM: explain(x, method="gradcam")', lambda: ex.explain(x, method="gradcam")),
        Case("pytorch-grad-cam GradCAM(model, [model.layer4[-1]])", lambda: pgc(input_tensor=xt, targets=None)),
    ]
    measure(cases, args.repeats)
    plain_c, ours_c, theirs_c = cases
    rows = [
        [c.name, f"{c.median:.3f}", c.span, f"{c.median / plain_c.median:.2f}×", ort_column(c), c.other_load]
        for c in cases
    ]
    ratio_plain = ours_c.median / plain_c.median
    ratio_pgc = theirs_c.median / ours_c.median
    out.append(f"### 1a. Grad-CAM — ResNet-50, batch {n}, {SIZE}×{SIZE}, layer4 output\n")
    out.append(f"onnxcam layer (auto): `{ex.layer.name}`; median of {args.repeats} warm runs.\n")
    out.append(table(["configuration", "median s", "min–max s", "÷ plain inference", "time in ORT run()", OTHERS], rows))
    out.append("")
    out.append(
        table(
            ["ratio", "value", "target", "met"],
            [
                ["onnxcam Grad-CAM ÷ plain inference", f"{ratio_plain:.2f}×", "≤ 1.3×", _yes(ratio_plain <= 1.3)],
                ["pytorch-grad-cam ÷ onnxcam Grad-CAM", f"{ratio_pgc:.2f}×", "≥ 5×", _yes(ratio_pgc >= 5)],
            ],
        )
    )
    out.append(
        f"\nChecks: max |logits ORT − torch| = {np.abs(logits_ort - logits_torch).max():.2e}; "
        f"max |heatmap onnxcam − pytorch-grad-cam| = {np.abs(ours.heatmap - theirs).max():.2e}.\n"
    )


def section_batch1(args, path: Path, out: list[str]) -> None:
    """One image per call, as a server sees requests: the fixed cost per call, which batching hides."""
    cases, pairs = [], []
    for label, model, n in (("demo model (EfficientNet-Lite0)", DEMO, 1), ("demo model, 8 images per call", DEMO, 8),
                            ("ResNet-50", path, 1)):
        plain = cpu_session(model, args.threads)
        ex = onnxcam_explainer(model, args.threads)
        calls = max(1, args.batch1_calls // n)
        pair = _calls(label, plain, ex, images(n), calls)
        cases += pair
        pairs.append((calls, pair))
    measure(cases, args.repeats)
    rows = [[c.name, f"{1e3 * c.median / calls:.2f}", f"{c.median / p.median:.2f}×", ort_column(c), c.other_load]
            for calls, (p, o) in pairs for c in (p, o)]
    out.append(f"### 0. One image per call — {args.batch1_calls} calls per timed run ({args.batch1_calls // 8} with 8 "
               f"images), {SIZE}×{SIZE}\n")
    out.append(table(["configuration", "ms per call", "÷ plain inference", "time in ORT run()", OTHERS], rows))
    out.append("")


def _calls(label: str, plain, ex, x: np.ndarray, calls: int) -> list[Case]:
    """Each timed run follows a few untimed calls: the cases alternate, and the previous case's threads spin for
    ~30 ms after its last run (both sessions spin, as a plain inference loop does), which would slow the first calls
    of the next case's run; neither loop alone, as a user runs it, meets that."""
    name = plain.get_inputs()[0].name

    def inference():
        return plain.run(None, {name: x})

    def gradcam():
        return ex.explain(x, method="gradcam")

    return [Case(f"{label}: {what}", lambda f=f: [f() for _ in range(calls)], settle=lambda f=f: [f() for _ in range(10)])
            for what, f in (("plain ORT inference", inference), ("onnxcam Grad-CAM", gradcam))]


def section_rsi(args, path: Path, out: list[str]) -> None:
    import torch
    from captum.attr import LayerConductance

    from onnxcam.runner import DEFAULT_BATCH

    n, m = args.path_images, args.steps
    rows_total = n * (m + 1)
    x = images(n)
    xt = torch.from_numpy(x)
    plain = cpu_session(path, args.threads)
    ex = onnxcam_explainer(path, args.threads)
    model = torch_model()
    targets = plain.run(None, {"input": x})[0].argmax(-1)
    targets_t = torch.from_numpy(targets)

    def rsi(bs):
        options = {} if bs is None else {"batch_size": bs}
        return lambda: ex.explain(x, method="rsi-gradcam", steps=m, baseline=BASELINE, **options)

    def rsi_warmup(bs):  # session + arena for chunks of bs rows: one image, steps so that rows = bs
        b = bs or DEFAULT_BATCH
        return lambda: ex.explain(x[:1], method="rsi-gradcam", steps=max(1, b - 1), batch_size=b, baseline=BASELINE)

    sweep = sorted({DEFAULT_BATCH, *args.batch_sizes})
    ox = [Case(f"onnxcam rsi-gradcam, batch_size={bs}" + (" (default)" if bs == DEFAULT_BATCH else ""),
               rsi(None if bs == DEFAULT_BATCH else bs), rsi_warmup(bs), keep=bs == DEFAULT_BATCH) for bs in sweep]

    lc = LayerConductance(model, model.layer4[-1])
    gc.collect()
    available = _mem_available()
    captum_cases, skipped = [], []
    for spec in args.captum_batch_sizes:
        ibs = rows_total if spec == "all" else int(spec)
        need = 1e9 + ibs * TORCH_BYTES_PER_ROW
        if available and need > 0.7 * available:
            skipped.append(f"internal_batch_size={ibs} (≈{need / 1e9:.0f} GB of autograd activations, "
                           f"{available / 1e9:.0f} GB available)")
            continue
        label = f"Captum LayerConductance, n_steps={m}, internal_batch_size={ibs}" + (" (all rows)" if spec == "all" else "")
        call = functools.partial(lc.attribute, xt, baselines=0.0, target=targets_t, n_steps=m, internal_batch_size=ibs)
        warm = functools.partial(lc.attribute, xt, baselines=0.0, target=targets_t,
                                 n_steps=max(1, min(m, ibs // n - 1)), internal_batch_size=ibs)
        captum_cases.append(Case(label, call, warm))

    ln = min(args.loop_images, n)
    loop = Case(
        f"reference code's one-step loop (torch, batch 1, loss.backward()), timed on {ln} image(s) × {n / ln:g}",
        lambda: reference_loop(model, model.layer4[-1], x[:ln], targets[:ln], m),
        lambda: reference_loop(model, model.layer4[-1], x[:1], targets[:1], 1),
        scale=n / ln,
        keep=True,
    )
    lean = Case(  # what a careful user would write: informational, not the reference
        f"lean one-step loop (torch, batch 1, autograd.grad to the layer only), timed on {ln} image(s) × {n / ln:g}",
        lambda: reference_loop(model, model.layer4[-1], x[:ln], targets[:ln], m, authors=False),
        lambda: reference_loop(model, model.layer4[-1], x[:1], targets[:1], 1, authors=False),
        scale=n / ln,
    )
    activation = Case(  # a different sum (straight line in activation space): shown, not used for the targets
        f"onnxcam rsi-gradcam, path=\"activation\", batch_size={DEFAULT_BATCH} (cheaper variant, not the same sum)",
        lambda: ex.explain(x, method="rsi-gradcam", steps=m, path="activation", baseline=BASELINE),
    )
    cases = [*ox, *([activation] if args.activation_path else []), *captum_cases, loop, lean]
    log(f"rsi: {n} images × {m + 1} points = {rows_total} rows per call; {len(cases)} configurations")

    measure(cases, args.repeats)

    default = next(c for c in ox if "(default)" in c.name)
    ref = loop.result  # check: onnxcam's default RSI-Grad-CAM equals the reference loop
    rel = np.abs(default.result.cam[:ln] - ref).max() / max(np.abs(ref).max(), 1e-12)
    best = min(ox, key=lambda c: c.median)
    best_captum = min(captum_cases, key=lambda c: c.median) if captum_cases else None
    plain_row = _plain_per_row(plain, args)
    rows = []
    for c in cases:
        rows.append([
            c.name, f"{c.median:.2f}", c.span, f"{c.median / rows_total * 1e3:.0f}", ort_column(c),
            f"{c.median / default.median:.2f}×", f"{c.median / best.median:.2f}×", c.other_load,
        ])
    out.append(f"### 1b. RSI-Grad-CAM — ResNet-50, {n} images × {m} steps ({m + 1} points) = {rows_total} rows, "
               f"{SIZE}×{SIZE}\n")
    out.append(
        f"onnxcam: default options (input-space path, trapezoid, prob score, ReLU on G) but baseline={BASELINE} "
        f"(the baseline Captum and the loop use); median of {args.repeats} "
        f"warm runs. Captum: LayerConductance(model, model.layer4[-1]), baselines 0, top-1 targets, default "
        f"method (gausslegendre; it evaluates {m + 1} points, plus one overlapping point per extra internal batch). "
        f"Plain ORT inference of the original model costs {plain_row * 1e3:.0f} ms per row at batch 8: "
        f"{plain_row * rows_total:.1f} s for {rows_total} rows — the floor for any input-space path method.\n"
    )
    out.append(table(["configuration", "median s", "min–max s", "ms / row", "time in ORT run()",
                      "÷ onnxcam default", "÷ onnxcam best", OTHERS], rows))
    if skipped:
        out.append("\nSkipped (would not fit in memory): " + "; ".join(skipped) + ".")
    ratios = []
    for label, ref_case in ([("best Captum LayerConductance", best_captum)] if best_captum else []) + [("reference loop", loop)]:
        target = 1.8 if ref_case is not loop else 5.0
        for which, ours_c in (("default", default), ("best", best)):
            r = ref_case.median / ours_c.median
            ratios.append([f"{label} ÷ onnxcam {which} ({_bs(ours_c)})", f"{r:.2f}×", f"≥ {target:g}×", _yes(r >= target)])
    r = lean.median / default.median
    ratios.append([f"lean loop ÷ onnxcam default ({_bs(default)}) (informational: not the reference code)", f"{r:.2f}×",
                   "–", "–"])
    if args.activation_path:
        r = loop.median / activation.median
        ratios.append(["reference loop ÷ onnxcam path=\"activation\" (a different sum: informational)", f"{r:.2f}×",
                       "–", "–"])
    out.append("")
    out.append(table(["ratio", "value", "target", "met"], ratios))
    out.append(
        f"\nBest onnxcam batch_size: {_bs(best)} ({best.median:.2f} s); default {DEFAULT_BATCH} ({default.median:.2f} s). "
        f"Check: onnxcam rsi-gradcam cam vs the reference loop on {ln} image(s): max relative difference {rel:.1e}.\n"
    )


def section_profile(args, path: Path, out: list[str]) -> None:
    """Where RSI-Grad-CAM's time goes: its graph vs the plain model at equal rows, and per-op ORT time."""
    import onnxruntime as ort

    from onnxcam.surgery import TARGET, explainer_graph

    bs = args.profile_batch
    x = images(bs)
    target = np.full(bs, -1, np.int64)
    plain = cpu_session(path, args.threads)
    ex = onnxcam_explainer(path, args.threads)
    layer = ex.layer.name
    graph = ex.session((layer,), "prob", expose=(layer,))  # the session explain(method="rsi-gradcam") streams through
    feed = {ex.model.image_input: x, TARGET: target}
    cases = [
        Case(f"plain ORT inference, {bs} rows", lambda: plain.run(None, {"input": x})),
        Case(f"onnxcam RSI-Grad-CAM graph (prob score, A and ∂p/∂A out), {bs} rows", lambda: graph.session.run(None, feed)),
    ]
    measure(cases, args.repeats)
    a = cases[0]

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "onnxcam-bench-profile")
    proto = explainer_graph(ex.model, [layer], "prob", (layer,))
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, feed)
    session.run(None, feed)
    trace = Path(session.end_profiling())
    events = [e for e in json.loads(trace.read_text()) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    trace.unlink()
    runs = 2
    added = sum(e["dur"] for e in events if e["name"].startswith(("onnxcam", "grad_seed"))) / runs / 1e6
    total = sum(e["dur"] for e in events) / runs / 1e6
    by_op: dict[str, float] = {}
    for e in events:
        op = e.get("args", {}).get("op_name", "?")
        by_op[op] = by_op.get(op, 0.0) + e["dur"] / runs / 1e6
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:5]

    out.append(f"### 1c. Profile — where RSI-Grad-CAM's time goes (ResNet-50, {bs} rows per run)\n")
    out.append(table(
        ["configuration", "median s", "min–max s", "ms / row", "÷ plain", OTHERS],
        [[c.name, f"{c.median:.3f}", c.span, f"{c.median / bs * 1e3:.0f}", f"{c.median / a.median:.2f}×", c.other_load]
         for c in cases],
    ))
    out.append(
        f"\nORT per-node profile of the same graph ({runs} runs of {bs} rows): kernels {total:.2f} s per run, of which "
        f"{added * 1e3:.1f} ms ({100 * added / total:.2f} %) in the nodes onnxcam adds (target seed, softmax, "
        f"backward to the layer); top op types: " + ", ".join(f"{op} {100 * t / total:.0f} %" for op, t in top) + ".\n"
    )


def section_spinning(args, path: Path, out: list[str]) -> None:
    """Why no ORT session here or in onnxcam spins: pairs of runs (two sessions of the plain model alternately, one
    session twice, a session then the torch model) with ONNX Runtime's default busy-waiting after a run and without."""
    import onnxruntime as ort
    import torch

    x = images(8)
    model = torch_model()

    def sessions(spin: bool):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        return [ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]) for _ in range(2)]

    def torch_forward():
        with torch.no_grad():
            return model(torch.from_numpy(x))

    cases = []
    for spin in (True, False):
        a, b = sessions(spin)
        label = "spinning (ORT default)" if spin else "no spinning"
        cases += [Case(f"two sessions alternately, {label}", lambda a=a, b=b: (a.run(None, {"input": x}),
                                                                                 b.run(None, {"input": x}))),
                  Case(f"one session twice, {label}", lambda a=a: (a.run(None, {"input": x}), a.run(None, {"input": x}))),
                  Case(f"a session, then torch's forward, {label}", lambda a=a: (a.run(None, {"input": x}),
                                                                                  torch_forward()))]
    measure(cases, args.repeats)
    rows = [[c.name, f"{c.median * 1e3:.0f}", f"{min(c.times) * 1e3:.0f}–{max(c.times) * 1e3:.0f}", c.other_load]
            for c in cases]
    out.append("### Spinning — ResNet-50, batch 8, pairs of runs\n")
    out.append(table(["configuration", "median ms per pair", "min–max", OTHERS], rows))
    out.append("")


def _plain_per_row(plain, args) -> float:
    """Plain inference, batch 8: median seconds per row (3 warm runs)."""
    x = images(8)
    plain.run(None, {"input": x})
    times = []
    for _ in range(3):
        t = time.perf_counter()
        plain.run(None, {"input": x})
        times.append(time.perf_counter() - t)
    return statistics.median(times) / 8


def _bs(c: Case) -> str:
    return c.name.split(", ", 1)[1]


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _mem_available() -> float:
    try:
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemAvailable"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return 0.0


def section_memory(args, path: Path, out: list[str]) -> None:
    n = args.memory_images
    results = []
    for steps in args.memory_steps:
        for bs in args.memory_batch_sizes:
            log(f"memory: {n} images, steps {steps}, batch_size {bs} (fresh process)")
            cmd = [sys.executable, __file__, "--memory-child", str(path), str(n), str(steps), str(bs), str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"memory child failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            log(f"  run peak {r['run_peak_mb']:.0f} MB (before {r['before_mb']:.0f}), process peak {r['peak_mb']:.0f} MB, "
                f"{r['seconds']:.1f} s")
            results.append(r)
    rows = [
        [str(r["steps"]), str(r["batch_size"]), str(r["images"] * (r["steps"] + 1)), f"{r['load_peak_mb']:.0f}",
         f"{r['setup_peak_mb']:.0f}", f"{r['before_mb']:.0f}", f"{r['run_peak_mb']:.0f}",
         f"{r['run_peak_mb'] - r['before_mb']:.0f}", f"{r['peak_mb']:.0f}", f"{r['seconds']:.1f}"]
        for r in results
    ]
    out.append(f"### 2. Peak memory — RSI-Grad-CAM, ResNet-50, {n} images, {SIZE}×{SIZE}\n")
    out.append(
        "One fresh process per configuration: onnxcam + onnxruntime only "
        f"(torch imported: {'yes' if any(r['torch_imported'] for r in results) else 'no'}). "
        "Memory is read from /proc/self/status (VmRSS, VmHWM), not ru_maxrss: a child's ru_maxrss "
        "inherits the high-water mark of the process it was forked from (the bench, with torch loaded). "
        "'load peak' = VmHWM after Explainer(model); 'setup peak' = VmHWM after a 2-row call that builds the "
        "gradient graph and its session; then VmHWM is reset (clear_refs) and the measured call "
        "explain(x, method=\"rsi-gradcam\", steps, batch_size, baseline=0.0) runs: 'RSS before', 'run peak', their difference; "
        "'process peak' = the highest VmHWM of the whole process.\n"
    )
    out.append(table(["steps", "batch_size", "rows", "load peak MB", "setup peak MB", "RSS before MB", "run peak MB",
                      "run peak − before MB", "process peak MB", "run s"], rows))
    grow = {(r["steps"], r["batch_size"]): r["run_peak_mb"] - r["before_mb"] for r in results}
    peak = {(r["steps"], r["batch_size"]): r["peak_mb"] for r in results}

    def listed(values, unit=" MB"):
        return ", ".join(f"{v:.0f}" for v in values) + unit

    lines = []
    for bs in args.memory_batch_sizes:
        g = [grow[(s, bs)] for s in args.memory_steps]
        q = [peak[(s, bs)] for s in args.memory_steps]
        lines.append(f"batch_size {bs}, steps {', '.join(map(str, args.memory_steps))}: run growth {listed(g)}, "
                     f"process peak {listed(q)} (spread {max(q) - min(q):.0f} MB)")
    for s in args.memory_steps:
        g = [grow[(s, bs)] for bs in args.memory_batch_sizes]
        q = [peak[(s, bs)] for bs in args.memory_batch_sizes]
        lines.append(f"steps {s}, batch_size {', '.join(map(str, args.memory_batch_sizes))}: run growth {listed(g)}, "
                     f"process peak {listed(q)}")
    out.append("\n" + "\n".join(f"- {x}" for x in lines) + "\n")


def _vm(field_name: str) -> float:
    """VmRSS / VmHWM of this process in MB (VmHWM, unlike ru_maxrss, is not inherited across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no {field_name} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: echo 5 > /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_child(path: str, n: int, steps: int, bs: int, threads: int) -> None:
    x = images(n)
    ex = onnxcam_explainer(Path(path), threads)
    load_peak = _vm("VmHWM")
    ex.explain(x[:1], method="rsi-gradcam", steps=1, batch_size=bs, baseline=BASELINE)  # graph surgery + session: 2 rows only
    setup_peak = _vm("VmHWM")
    before = _vm("VmRSS")
    reset = _reset_peak()
    t = time.perf_counter()
    ex.explain(x, method="rsi-gradcam", steps=steps, batch_size=bs, baseline=BASELINE)
    seconds = time.perf_counter() - t
    run_peak = _vm("VmHWM")
    print(json.dumps({"images": n, "steps": steps, "batch_size": bs, "load_peak_mb": load_peak, "setup_peak_mb": setup_peak,
                      "before_mb": before, "run_peak_mb": run_peak if reset else float("nan"),
                      "peak_mb": max(setup_peak, run_peak), "seconds": seconds, "torch_imported": "torch" in sys.modules}))


# ---------------------------------------------------------------- main


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--full", action="store_true",
                   help="full-size configuration: --path-images 8 --loop-images 2 --memory-images 8 "
                        "--captum-batch-sizes 16,64,all (slow)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and ORT intra-op threads (default: all cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per configuration, after one warm-up (≥ 3)")
    p.add_argument("--images", type=int, default=8, help="Grad-CAM batch (default 8)")
    p.add_argument("--batch1-calls", type=int, default=50, help="calls per timed run in the batch1 section")
    p.add_argument("--steps", type=int, default=50, help="RSI-Grad-CAM steps m (m + 1 points; default 50)")
    p.add_argument("--path-images", type=int, default=2, help="images for the RSI section (default 2; --full: 8)")
    p.add_argument("--batch-sizes", type=ints, default=[8, 16, 32, 64], help="onnxcam batch_size sweep (rows per ORT run)")
    p.add_argument("--captum-batch-sizes", default="16,64",
                   help="Captum internal_batch_size values; 'all' = every row in one batch (skipped if it cannot fit)")
    p.add_argument("--activation-path", action="store_true",
                   help="also time RSI-Grad-CAM with path='activation' (a different, cheaper sum; informational)")
    p.add_argument("--loop-images", type=int, default=1, help="images the reference loop is timed on (scaled linearly)")
    p.add_argument("--profile-batch", type=int, default=16, help="rows per run in the profile section (default 16)")
    p.add_argument("--memory-images", type=int, default=1, help="images for the memory section (default 1; --full: 8)")
    p.add_argument("--memory-steps", type=ints, default=[50, 200])
    p.add_argument("--memory-batch-sizes", type=ints, default=[8, 32])
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each timed run wait up to SECONDS until other processes use ≤ --quiet-share of the CPUs")
    p.add_argument("--quiet-share", type=float, default=0.15, help="see --wait-quiet (default 0.15 = 15 %% of all cores)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "onnxcam-bench", help="export cache dir")
    p.add_argument("--output", type=Path, help="also write the markdown report to this file")
    p.add_argument("--memory-child", nargs=5, metavar=("MODEL", "N", "STEPS", "BS", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.memory_child:
        model, n, steps, bs, threads = args.memory_child
        memory_child(model, int(n), int(steps), int(bs), int(threads))
        return
    if args.full:
        args.path_images, args.loop_images, args.memory_images = 8, 2, 8
        args.captum_batch_sizes = "16,64,all"
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.repeats < 3:
        p.error("--repeats must be at least 3 (the report is a median)")
    args.captum_batch_sizes = [v.strip() for v in args.captum_batch_sizes.split(",") if v.strip()]

    global QUIET
    if args.wait_quiet > 0:
        QUIET = (args.quiet_share, args.wait_quiet)

    import torch

    torch.set_num_threads(args.threads)
    OrtTimer.install()
    start = time.perf_counter()
    out = [
        "## Results\n",
        f"Command: `python tools/bench.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip() + "\n",
        machine(args.threads),
        "",
        "Each table's last column is the median share of all CPU cores that *other* processes used during the "
        "timed runs (from /proc/stat minus this process's CPU time): on a shared machine, read the times with it. "
        + (f"Timed runs waited (up to {args.wait_quiet:g} s each) until other processes used ≤ "
           f"{100 * args.quiet_share:.0f} % of the cores." if QUIET else "No quiet-machine gate (--wait-quiet 0).")
        + "\n",
    ]
    path = exported_model(args.cache)
    sections = {"batch1": section_batch1, "gradcam": section_gradcam, "rsi": section_rsi, "profile": section_profile,
                "memory": section_memory,
                "spinning": section_spinning}
    for name in SECTIONS:
        if name in only:
            log(f"section {name}")
            sections[name](args, path, out)
            gc.collect()
    out.append(f"Total bench time: {(time.perf_counter() - start) / 60:.1f} min; load average at end: {loadavg()}.\n")
    report = "\n".join(out)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)


if __name__ == "__main__":
    main()
