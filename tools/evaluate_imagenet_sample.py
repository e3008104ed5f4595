"""Evaluate every onnxcam method on the ImageNet sample with the demo model and write docs/evaluation.md.

Each stage but worst-case is one `onnxcam evaluate` command (printed, and written into the report); those stages
share one JSONL log, so they reuse each other's (image, method) values and a killed run resumes where it stopped.
worst-case runs in this process and keeps its per-image values in OUT/worst-case.json (written after each batch):

    python tools/evaluate_imagenet_sample.py                       # run the stages, then write the report
    python tools/evaluate_imagenet_sample.py --report-only         # the report from what the log holds now
    python tools/evaluate_imagenet_sample.py --stages core-subset,igos

Stages, in priority order (S = --subset images spread evenly over labels.csv, all 100 by default; the explained class is the
labelled one; every stage adds the random and center baselines):
  core-subset   all methods but I-GOS on S: deletion/insertion, confidence change, structure
  stability     max-sensitivity and step convergence of gradcam, rsi-gradcam, integrated-gradcam on the
                first --stability images of S
  step-check    deletion/insertion with the RISE step (224 px) on the first --check images of S, to measure
                what the coarser --deletion-step changes
  road          ROAD (MoRF, LeRF, combined) of all methods but I-GOS on the first --road images of S
  structure     confidence change and structure of the cheap and path methods on all images
  worst-case    the simple gradient's dual-norm worst-case δ (L∞, L2, L1, elastic-net, 14×14 patch groups) on the
                first --worst-case images of S: predicted ε‖∇‖_*, actual logit change, and a random δ's
  igos          I-GOS (hundreds of Grad-CAM's cost) with Grad-CAM and IG on the first --igos images of S:
                the same metrics
A report table uses only the images for which every method of its stage is done (paired comparisons); an
image on which a method failed (say, an all-zero Grad-CAM for a class without positive evidence) is left out
of its stage's table and listed under it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from onnxcam import OnnxcamError  # noqa: E402
from onnxcam import evaluate as ev  # noqa: E402
from onnxcam.outputs import read_jsonl  # noqa: E402

CHEAP = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "saliency"]
PATH = ["smooth-gradcam++", "integrated-gradcam", "rsi-gradcam"]  # maps in 1-2 s per image here
COSTLY = ["ig", "smoothgrad"]  # input gradients: 50 and 25 rows at ~0.15 s each here
STRUCTURE = "avg-drop,increase,gini,top-k,components,component-size"
STAGES = {  # name: (methods, metrics, which images, deletion step or None for --deletion-step), in priority order
    "core-subset": (CHEAP + PATH + COSTLY, "deletion,insertion," + STRUCTURE, "subset", None),
    "stability": (["gradcam", "rsi-gradcam", "integrated-gradcam"], "max-sensitivity,step-convergence", "stability",
                  None),
    "step-check": (["gradcam", "rsi-gradcam"], "deletion,insertion", "check", 224),
    "road": (CHEAP + PATH + COSTLY, "road-morf,road-lerf,road", "road", None),
    "structure": (CHEAP + PATH, STRUCTURE, "all", None),
    "igos": (["igos", "gradcam", "ig"], "deletion,insertion," + STRUCTURE, "igos", None),
}
TITLES = {"core-subset": "Subset S: deletion, insertion, confidence, structure",
          "igos": "Subset S: I-GOS against Grad-CAM and IG", "stability": "Stability (first images of S)",
          "step-check": "Step check: RISE step (224 px per step)", "road": "ROAD (first images of S)",
          "structure": "All images: confidence and structure"}
WORST_CASE = "worst-case"  # runs in-process (onnxcam.metrics.worst_case), not through `onnxcam evaluate`
ORDER = ["core-subset", "stability", "step-check", "road", "structure", WORST_CASE, "igos"]  # priority order
NOTES = "## Run notes"  # a hand-written section at the report's end, kept when it is regenerated
WC_NORMS = ["linf", "l2", "l1", "elastic", "group"]
WC_KEYS = ["predicted", "dual", "actual", "random"]
WC_PATCH, WC_PER_CALL = 14, 10  # group patch side; images per worst_case call (bounds memory)
WC_CHOICES = {  # why each budget (in [0, 1] pixel units) is what it is
    "linf": "1/255: one grey level on every pixel channel",
    "l2": "√(3·H·W)/(16·255): the L2 norm of moving 1/256 of the pixel channels by 1/255 (a sixteenth of the L2 "
          "norm of the L∞ δ), small so that the first-order prediction stays meaningful",
    "l1": "0.01: one pixel channel moved by 2.55 grey levels (the worst case moves a single coordinate; on this "
          "model the first-order prediction there holds only for a few grey levels, and at the whole range "
          "the logit barely moves)",
    "elastic": "ε = 1/255, ε₂ = 1/510 (penalty form, δ = ε·sign(g) + 2ε₂·g): in pixel units δ = (sign(g) + g)/255, so "
               "the L2 part moves a pixel channel by more than the L∞ part only where |∂logit/∂pixel| > 1",
    "group": "14/255 per 14×14 patch and channel: the L2 norm of 1/255 on each of its pixels, so the ball contains "
             "the L∞ one",
}


def images(data: Path) -> list[Path]:
    with open(data / "labels.csv", newline="", encoding="utf-8") as f:
        return [data / row["file"] for row in csv.DictReader(f)]


def chosen(all_images: list[Path], which: str, args) -> list[Path]:
    """All images, or every k-th (spread over the classes) for the subsets; the smaller subsets are prefixes of S."""
    if which == "all":
        return all_images
    subset = all_images[:: max(1, len(all_images) // args.subset)][: args.subset]
    return subset[: {"subset": args.subset, "igos": args.igos, "stability": args.stability, "check": args.check,
                     "road": args.road, WORST_CASE: args.worst_case}[which]]


def command(stage: str, args, all_images: list[Path]) -> list[str]:
    methods, metrics, which, step = STAGES[stage]
    step = step or args.deletion_step
    log = args.out / ("results.jsonl" if step == args.deletion_step else f"results-step{step}.jsonl")
    return ["onnxcam", "evaluate", str(args.model), *map(str, chosen(all_images, which, args)),
            "--labels", str(args.data / "labels.csv"), *[a for m in methods for a in ("-m", m)], "--metric", metrics,
            "--json", str(args.out / f"{stage}.json"), "--log", str(log), "--deletion-step", str(step),
            "--batch-size", str(args.batch_size)]


def shown(cmd: list[str], args) -> str:
    """The command with the image list abbreviated (the report names the images) and paths as from the repo root."""
    imgs = [c for c in cmd if c.endswith(".jpg")]
    rest = [c.replace(str(args.data), args.data_shown).replace(str(ROOT) + "/", "") for c in cmd if not c.endswith(".jpg")]
    return shlex.join(rest[:3]) + f" {args.data_shown}/<{len(imgs)} images> " + shlex.join(rest[3:])


def shown_args(args) -> str:
    """The tool's own arguments with the sample's path as seen from the repo root."""
    data = str(args.data)
    return " ".join(args.data_shown if a in (data, str(Path(data).resolve())) else shlex.quote(a) for a in args.argv)


def cpu_busy() -> float | None:
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def run_stage(stage: str, args, all_images: list[Path]) -> dict:
    if stage == WORST_CASE:
        print(f"[{time.strftime('%H:%M:%S')}] stage {stage}: {wc_command(args)}", flush=True)
        return timed(stage, args, lambda: worst_case_rc(args, all_images))
    cmd = command(stage, args, all_images)
    print(f"[{time.strftime('%H:%M:%S')}] stage {stage}: {shown(cmd, args)}", flush=True)
    return timed(stage, args, lambda: subprocess.call([sys.executable, "-m", "onnxcam", *cmd[1:]], cwd=ROOT))


def timed(stage: str, args, work) -> dict:
    """Run work() → exit code, and log its wall time and the CPU share other processes took meanwhile."""
    busy, own, start = cpu_busy(), os.times(), time.time()
    rc = work()
    wall, t = time.time() - start, os.times()
    mine = sum(t[:4]) - sum(own[:4])  # this process and its children, user and system
    after = cpu_busy()
    others = None if busy is None or after is None else max(0.0, (after - busy - mine) / (wall * (os.cpu_count() or 1)))
    info = {"stage": stage, "rc": rc, "wall_s": round(wall, 1), "others_cpu_share": others and round(others, 2)}
    print(f"[{time.strftime('%H:%M:%S')}] stage {stage} done: {info}", flush=True)
    with open(args.out / "stages.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(info) + "\n")
    return info


# ------------------------------------------------------------------------------------------- worst-case


def wc_command(args) -> str:
    """The invocation that runs (or resumes) only the worst-case stage, paths as from the repo root."""
    def rel(p: Path) -> str:
        return str(p).replace(str(ROOT) + "/", "")

    return shlex.join(["python", "tools/evaluate_imagenet_sample.py", "--stages", WORST_CASE, "--worst-case",
                       str(args.worst_case), "--subset", str(args.subset), "--model", rel(args.model), "--data",
                       args.data_shown, "--out", rel(args.out), "--batch-size", str(args.batch_size)])


def wc_budgets(size: tuple[int, int]) -> dict[str, list]:
    """[ε, ε₂ or None] per norm in [0, 1] pixel units (WC_CHOICES says why)."""
    h, w = size
    return {"linf": [1 / 255, None], "l2": [math.sqrt(3 * h * w) / (16 * 255), None], "l1": [0.01, None],
            "elastic": [1 / 255, 1 / 510], "group": [WC_PATCH / 255, None]}


def wc_model_units(budget: list, std: float) -> tuple[float, float | None]:
    """x_model = (x − mean)/std, so δ and ε scale by 1/std and ε₂ (δ = 2ε₂·g, g scaling by std) by 1/std²."""
    eps, eps2 = budget
    return eps / std, None if eps2 is None else eps2 / std**2


def wc_settings(args, prep) -> dict:
    """What the saved values depend on; a saved image is reused only under equal settings (JSON-normalized)."""
    if len(set(prep.std)) != 1:
        raise OnnxcamError(f"per-channel std {prep.std} cannot turn one pixel-unit ε into one model-unit ε")
    settings = {"model": f"{args.model}#{args.model.stat().st_size}", "preprocessing": [prep.size, prep.mean, prep.std,
                prep.layout], "budgets_pixel_units": wc_budgets(prep.size), "score": "logit", "patch": WC_PATCH,
                "per_call": WC_PER_CALL, "seed": "index of the call's batch in the image list"}
    return json.loads(json.dumps(settings))


def worst_case_rc(args, all_images: list[Path]) -> int:
    """run_worst_case as an exit code, like the other stages: a failure must not stop the later stages."""
    try:
        run_worst_case(args, all_images)
    except OnnxcamError as e:
        print(f"worst-case failed: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


def run_worst_case(args, all_images: list[Path]) -> None:
    """Worst-case and random δ per norm on the chosen images, WC_PER_CALL images per call; saves after each call."""
    from onnxcam import Explainer
    from onnxcam.image import model_preprocessing, read_rgb, write_atomic
    from onnxcam.metrics import worst_case

    ex = Explainer(args.model)
    prep = model_preprocessing(ex.model)  # exactly what `onnxcam evaluate` uses by default
    settings, path = wc_settings(args, prep), args.out / "worst-case.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    results = saved.get("images", {}) if saved.get("settings") == settings else {}
    labels = ev.read_labels(args.data / "labels.csv")
    imgs = chosen(all_images, WORST_CASE, args)
    budgets = {n: wc_model_units(b, prep.std[0]) for n, b in settings["budgets_pixel_units"].items()}
    for call, first in enumerate(range(0, len(imgs), WC_PER_CALL)):
        batch = imgs[first : first + WC_PER_CALL]
        if all(p.name in results for p in batch):
            continue
        start = time.time()
        x = np.stack([prep(read_rgb(p))[0] for p in batch])
        targets = np.array([ev.label_of(labels, p, args.data / "labels.csv") for p in batch])
        got = {n: worst_case(ex, x, targets, n, eps, seed=call, eps2=eps2, patch=WC_PATCH, score="logit",
                             batch_size=args.batch_size) for n, (eps, eps2) in budgets.items()}
        seconds = (time.time() - start) / len(batch)
        for j, p in enumerate(batch):
            results[p.name] = {"target": int(targets[j]), "seconds": round(seconds, 3),
                               **{n: {k: float(r[k][j]) for k in WC_KEYS} for n, r in got.items()}}
        write_atomic(path, (json.dumps({"settings": settings, "images": results}, indent=1) + "\n").encode("utf-8"))
        print(f"[{time.strftime('%H:%M:%S')}] worst-case: {len(results)} images, {seconds:.2f} s per image", flush=True)


# ------------------------------------------------------------------------------------------- the report


def stage_summary(stage: str, args, all_images: list[Path]) -> tuple[dict, list[str], list[str], dict] | None:
    """Summary over the images that every method of the stage has finished; None if there are none yet.

    summary["failed"] lists (image, method, error) for the images left out because a method failed on them."""
    methods, metrics, which, step = STAGES[stage]
    methods = ev.check_methods(methods)
    metrics = ev.parse_metrics([metrics])
    step = step or args.deletion_step
    log = args.out / ("results.jsonl" if step == args.deletion_step else f"results-step{step}.jsonl")
    records = read_jsonl(log)
    if not records:
        return None
    imgs = chosen(all_images, which, args)
    by_pair: dict[tuple[str, str], dict] = {}
    seconds: dict[str, list[float]] = {}
    for r in records:
        if r.get("settings", {}).get("metrics", {}).get("deletion_step") != step:
            continue
        key = (r["image"], r["method"])
        entry = by_pair.setdefault(key, {"values": {}, "curves": {}})
        entry["values"].update(r.get("values") or {})
        entry["curves"].update(r.get("curves") or {})
        entry["error"] = r.get("error")
        if r.get("seconds"):
            seconds.setdefault(r["method"], []).append(r["seconds"]["explain"])
    def pair(p, m):
        return by_pair.get((str(p.resolve()), m), {})

    finished = [p for p in imgs if all(pair(p, m).get("error") or set(metrics) <= set(pair(p, m).get("values", {}))
                                       for m in methods)]
    failed = [(p.name, m, pair(p, m)["error"]) for p in finished for m in methods if pair(p, m).get("error")]
    done = [p for p in finished if not any(pair(p, m).get("error") for m in methods)]
    if not done:
        return None
    per_image = {m: {str(p): by_pair[str(p.resolve()), m]["values"] for p in done} for m in methods}
    curves = {m: {c: [by_pair[str(p.resolve()), m]["curves"].get(c) for p in done] for c in ev.CURVES} for m in methods}
    summary = ev.summarize(per_image, metrics, curves)
    summary["images"] = [p.name for p in done]
    summary["failed"] = failed
    summary["per_image"] = {m: {Path(i).name: v for i, v in per.items()} for m, per in per_image.items()}
    return summary, metrics, methods, {m: float(np.median(v)) for m, v in seconds.items()}


def paired(summary: dict, metric: str, a: str, b: str) -> str:
    """Mean paired difference a − b ± standard error over images, and a verdict at two standard errors."""
    pa, pb = summary["per_image"][a], summary["per_image"][b]
    d = np.array([pa[i][metric] - pb[i][metric] for i in pa if pa[i].get(metric) is not None
                  and pb.get(i, {}).get(metric) is not None], np.float64)
    if len(d) < 2:
        return f"{metric}: not measured"
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    better = ev.METRICS[metric].better
    good = mean > 0 if better == "higher" else mean < 0
    if not d.any():
        verdict = "no difference (equal on every image)"
    elif abs(mean) <= 2 * se:
        verdict = "inconclusive (|difference| ≤ 2 SE)"
    else:
        verdict = f"{a} better" if good else f"{a} worse"
    wins = float(np.mean(d > 0 if better == "higher" else d < 0))
    ties = float(np.mean(d == 0))
    return (f"{metric} ({better} is better): {a} − {b} = {mean:+.4f} ± {se:.4f} over {len(d)} images, "
            f"{a} better on {100 * wins:.0f} %" + (f", equal on {100 * ties:.0f} %" if ties else "")
            + f" of them → **{verdict}**")


def kept_notes(doc: Path) -> str:
    """The previous report's hand-written run notes, which only a person can write, so a new report keeps them."""
    old = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    return "\n" + old[old.index(NOTES):] if NOTES in old else ""


def report(args, all_images: list[Path], commands: list[str]) -> str:
    out = ["# Evaluation on the ImageNet sample", "",
           "Every method of onnxcam on the 100 images of `../shared/data/imagenet-sample` (one per class of 100 "
           "ImageNet classes) with the demo model `models/efficientnet_lite0.onnx` (its metadata gives mean = std = 0.5), "
           "explaining the labelled class (`labels.csv`). Generated by `tools/evaluate_imagenet_sample.py` from the "
           "measured results; nothing here is copied from elsewhere. Metric definitions: "
           "`../shared/reference/methods.md`; ↑ / ↓ mark which direction is better; values are mean ± standard error "
           "over images. `random` (a uniform random map) and `center` (a centered Gaussian) are the "
           "\"no information\" baselines.", "",
           "## What was run", "",
           f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; ONNX Runtime "
           "CPUExecutionProvider. The stage table has one row per run of a stage, in order (a rerun resumes from the "
           "log, so a stage's rows add up) and the share of the CPU other processes took meanwhile; times are only "
           "indicative where it is high.", "",
           "```sh", f"python tools/evaluate_imagenet_sample.py {shown_args(args)}".rstrip(), "```", "",
           "which ran these stages (one `onnxcam evaluate` each, sharing one resumable JSONL log; worst-case runs in "
           "the tool's own process):", "", "```sh",
           *commands, "```", ""]
    stages = [json.loads(line) for line in (args.out / "stages.jsonl").read_text().splitlines()] \
        if (args.out / "stages.jsonl").is_file() else []
    if stages:
        out += ["| stage | exit code | wall time | CPU share of other processes |", "|---|---:|---:|---:|"]
        out += [f"| {s['stage']} | {s['rc']} | {s['wall_s'] / 60:.1f} min | {share(s['others_cpu_share'])} |"
                for s in stages]
        out.append("")
    out += [f"Deletion/insertion change {args.deletion_step} pixels per step ({224 * 224 // args.deletion_step} steps "
            "on 224×224) rather than RISE's 224 (224 steps), to fit the machine's time; the `step-check` table measures "
            "what that changes.", ""]
    summaries = {}
    for stage, title in TITLES.items():
        got = stage_summary(stage, args, all_images)
        if got is None:
            out += [f"## {title}", "", "Not run (or no image finished) in the time available.", ""]
            continue
        summary, metrics, methods, secs = got
        summaries[stage] = summary
        out += [f"## {title}", "", f"{len(summary['images'])} images: "
                + (", ".join(summary["images"]) if len(summary["images"]) < 30 else "see the stage's command") + ".", "",
                ev.table(summary, metrics, markdown=True), "",
                "Median seconds per image to compute the map: "
                + ", ".join(f"{m} {secs[m]:.2f}" for m in methods if m in secs) + ".", ""]
        if summary["failed"]:
            out += [f"Left out of this table ({len({f[0] for f in summary['failed']})} image(s)), because a method "
                    "failed on them: " + "; ".join(f"{i} {m}: {e}" for i, m, e in summary["failed"]) + ".", ""]
        out += deletion_note(summary)
        if stage == "step-check":
            out += step_difference(args, summary)
    out += worst_case_report(args, all_images)
    out += claims(summaries)
    counts = ", ".join(f"{stage} {len(s['images'])}" for stage, s in summaries.items())
    out += ["## Caveats", "", f"- One model (EfficientNet-Lite0, 7×7 last feature map); images per stage: {counts}. "
            "A verdict here says nothing about other models.", *CAVEATS]
    return "\n".join(out) + "\n"


CAVEATS = [
    "- The explained class is the labelled one, also for the images the model gets wrong.",
    "- Grad-CAM, XGrad-CAM and HiResCAM give the same numbers here: the auto layer feeds global average pooling "
    "and a linear head, so the gradient is constant over positions and the three maps coincide after "
    "normalization (a sanity check rather than a finding).",
    "- Structure metrics (Gini, top-5 % mass, components above 0.5) are computed on the heatmap at input resolution: "
    "CAM heatmaps are bilinearly upsampled 7×7 maps, so they are smooth and usually one component by construction, "
    "while input-gradient maps (saliency, IG, SmoothGrad) are pixel-level.",
    "- Max-sensitivity uses uniform noise of radius 0.02 in the normalized input space (0.01 in [0, 1] pixel units "
    "with std 0.5), 10 samples, seed 0. Step convergence compares the raw map at m = 50 and 2m = 100 steps; "
    "methods without path steps (Grad-CAM, the baselines) have none.",
    "- Step convergence compares the raw maps at m and 2m steps scaled to unit norm (onnxcam.metrics.step_convergence): "
    "Integrated Grad-CAM's raw map is a sum over its M steps, so its scale alone doubles with 2M.",
    "- ROAD imputes the removed pixels by the authors' noisy linear interpolation at percentiles 10, 20, …, 90 and "
    "scores the softmax probability of the explained class.",
    "- Not run here: the pointing games (the sample has no boxes or masks).",
    "",
]


def mean_se(v: np.ndarray) -> str:
    se = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{v.mean():.3g} ± {se:.2g}"


def worst_case_report(args, all_images: list[Path]) -> list[str]:
    """The worst-case section from OUT/worst-case.json: one row per norm over the chosen images it holds."""
    title = "## Worst-case perturbations of the simple gradient (dual norms)"
    path = args.out / "worst-case.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"images": {}}
    names = [p.name for p in chosen(all_images, WORST_CASE, args) if p.name in saved["images"]]
    if not names:
        return [title, "", "Not run (or no image finished) in the time available.", ""]
    settings, per = saved["settings"], [saved["images"][n] for n in names]
    std = settings["preprocessing"][2][0]
    out = [title, "", f"{len(names)} images (the first of S): " + (", ".join(names) if len(names) < 30 else
           "see the command") + ". For each budget ‖δ‖ ≤ ε, δ maximizes g·δ, g = ∂logit/∂x of the labelled class "
           "(the simple gradient), and the first-order change it predicts is the dual value ε‖g‖_* "
           "(`onnxcam.metrics.worst_case`, Gong, Dou, Farnia, CVPR 2024). *actual* is logit(x + δ) − logit(x); "
           "*random* is the same for a random δ of the same norm (a Gaussian direction put through the same "
           "maximization, so it has the norm and structure of the worst case but no knowledge of the model). "
           "The score is the raw logit of the labelled class (the metric's default), x + δ is not clipped to the "
           f"pixel range. Budgets are in [0, 1] pixel units and are divided by the model's std ({std:g}) to give "
           "the ε in model input units (ε₂ of the elastic net by std²); the dual value does not depend on the units.",
           "", "| norm | ε (pixel units) | dual ε‖g‖_* | actual | random | mean actual / mean abs(random) | "
           "actual > random | median actual / predicted |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    rows = {}
    for norm in WC_NORMS:
        v = {k: np.array([r[norm][k] for r in per]) for k in WC_KEYS}
        rows[norm] = {"vs_random": v["actual"].mean() / np.abs(v["random"]).mean(),
                      "wins": float(np.mean(v["actual"] > v["random"])),
                      "first_order": float(np.median(v["actual"] / v["predicted"]))}
        eps, eps2 = settings["budgets_pixel_units"][norm]
        out.append(f"| {norm} | {eps:.4g}" + (f", ε₂ = {eps2:.4g}" if eps2 is not None else "")
                   + f" | {mean_se(v['dual'])} | {mean_se(v['actual'])} | {mean_se(v['random'])} | "
                   f"{rows[norm]['vs_random']:.3g} | "
                   f"{100 * rows[norm]['wins']:.0f} % | {rows[norm]['first_order']:.2f} |")
    seconds = np.median([r["seconds"] for r in per])
    out += ["", "Budgets: " + "; ".join(f"{n}: {WC_CHOICES[n]}" for n in WC_NORMS) + ". For the elastic net (penalty "
            "form) the dual column is ε‖g‖₁ + ε₂‖g‖₂² while g·δ = ε‖g‖₁ + 2ε₂‖g‖₂²; the last column divides by g·δ. "
            "A random δ's change averages near zero (either sign), so the worst case is compared with its mean size.",
            "", wc_verdict(rows), "", f"Median {seconds:.2f} s per image for all five norms (one gradient and two "
            f"forward passes per norm), {WC_PER_CALL} images per call.", "", "```sh", wc_command(args), "```", ""]
    return out


def wc_verdict(rows: dict) -> str:
    """One sentence on what the worst-case table shows, computed from it."""
    beat = {n: r for n, r in rows.items() if r["vs_random"] > 1}
    lost = [f"{n} ({r['vs_random']:.2g}×, above the random δ on {100 * r['wins']:.0f} % of the images)"
            for n, r in rows.items() if n not in beat]
    text = []
    if beat:
        ratios, wins = [r["vs_random"] for r in beat.values()], [r["wins"] for r in beat.values()]
        text.append(f"the worst-case δ raises the logit {min(ratios):.3g}–{max(ratios):.3g}× more than a random δ of "
                    f"the same norm moves it (mean |change|) for {', '.join(beat)}, "
                    + ("and more than the random δ on every image" if min(wins) == 1 else
                       f"and more than the random δ on {100 * min(wins):.0f}–{100 * max(wins):.0f} % of the images"))
    if lost:
        text.append("it does not beat the random δ for " + ", ".join(lost))
    first = [n for n, r in rows.items() if r["first_order"] >= 0.8]
    over = [f"{n} {r['first_order']:.2f}" for n, r in rows.items() if r["first_order"] < 0.8]
    if first:
        text.append(f"the first-order prediction is within 20 % of the actual change (median) for {', '.join(first)}"
                    + (f" and overestimates it for the others (median actual / predicted: {', '.join(over)})"
                       if over else ""))
    else:
        text.append(f"the first-order prediction overestimates the actual change for every budget (median actual / "
                    f"predicted: {', '.join(over)})")
    return "; ".join(text)[0].upper() + "; ".join(text)[1:] + "."


def step_difference(args, summary: dict) -> list[str]:
    """|AUC(224 px per step) − AUC(--deletion-step)| on the same images and maps, from the main log."""
    main: dict[tuple[str, str], dict] = {}
    for r in read_jsonl(args.out / "results.jsonl"):
        main.setdefault((Path(r["image"]).name, r["method"]), {}).update(r.get("values") or {})
    lines = []
    for kind in ("deletion", "insertion"):
        d = [abs(v[kind] - main[i, m][kind]) for m, per in summary["per_image"].items() for i, v in per.items()
             if v.get(kind) is not None and main.get((i, m), {}).get(kind) is not None]
        if d:
            lines.append(f"{kind}: mean |difference| {np.mean(d):.4f}, largest {np.max(d):.4f} over {len(d)} (image, method)")
    if not lines:
        return []
    return [f"Against {args.deletion_step} px per step on the same images and maps: " + "; ".join(lines) + ".", ""]


def deletion_note(summary: dict) -> list[str]:
    """Say so when the random map beats Grad-CAM at deletion: pixel-scattered removal is itself destructive."""
    means = summary["methods"]
    if "deletion" not in means.get("random", {}) or "deletion" not in means.get("gradcam", {}):
        return []
    if means["random"]["deletion"] is None or means["gradcam"]["deletion"] is None:
        return []
    if means["random"]["deletion"] >= means["gradcam"]["deletion"]:
        return []
    inserted = {m: v.get("insertion") for m, v in means.items() if v.get("insertion") is not None}
    last = bool(inserted) and min(inserted, key=inserted.get) == "random"
    return [f"Note: the random map scores a *lower* (better) deletion AUC than Grad-CAM here "
            f"({means['random']['deletion']:.3f} against {means['gradcam']['deletion']:.3f}): zeroing scattered "
            "pixels destroys the image faster than zeroing one smooth region, so deletion rewards pixel-level, "
            "scattered maps (saliency, IG, SmoothGrad, random) whatever their information; read deletion together "
            "with insertion" + (", where random is last." if last else "."), ""]


def share(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.0f} %"


def claims(summaries: dict) -> list[str]:
    out = ["## Do the seeds' claims hold here?", "",
           "Paired differences over the same images (mean ± standard error); a claim holds here only where the "
           "difference is in its favour by more than two standard errors.", ""]
    focus = summaries.get("structure") or summaries.get("core-subset")
    checks = [("RSI-Grad-CAM is more focused than Grad-CAM", focus, ["gini", "top-k", "components"],
               [("rsi-gradcam", "gradcam")]),
              ("RSI-Grad-CAM is more stable than Grad-CAM (max-sensitivity); path methods' step convergence",
               summaries.get("stability"), ["max-sensitivity", "step-convergence"],
               [("rsi-gradcam", "gradcam"), ("rsi-gradcam", "integrated-gradcam")]),
              ("I-GOS has better deletion/insertion than Grad-CAM and IG", summaries.get("igos"),
               ["deletion", "insertion"], [("igos", "gradcam"), ("igos", "ig")])]
    for title, summary, metrics, pairs in checks:
        out += [f"**{title}.**", ""]
        if summary is None:
            out += ["- not measured (the stage did not finish in the time available)", ""]
            continue
        for a, b in pairs:
            for metric in metrics:
                if metric == "step-convergence" and "steps" not in ev.method_parameters(b):
                    out.append(f"- step-convergence: {b} has no path steps, so there is nothing to compare")
                    continue
                out.append(f"- {paired(summary, metric, a, b)}")
        out.append("")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "imagenet-sample",
                        help="the sample: JPEGs and labels.csv (default ../shared/data/imagenet-sample)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "efficientnet_lite0.onnx")
    parser.add_argument("--out", type=Path, default=Path("/tmp/onnxcam-eval"), help="logs and JSON (not the repo)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "evaluation.md")
    parser.add_argument("--subset", type=int, default=100, help="images in S")
    parser.add_argument("--igos", type=int, default=100, help="images of the igos stage (first of S)")
    parser.add_argument("--stability", type=int, default=100, help="images of the stability stage (first of S)")
    parser.add_argument("--check", type=int, default=100, help="images of the step check (first of S)")
    parser.add_argument("--road", type=int, default=100, help="images of the ROAD stage (first of S)")
    parser.add_argument("--worst-case", type=int, default=100, help="images of the worst-case stage (first of S)")
    parser.add_argument("--deletion-step", type=int, default=896, help="pixels per deletion/insertion step")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--stages", default=",".join(ORDER), help=f"comma-separated, in order: {', '.join(ORDER)}")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.argv = [a for a in sys.argv[1:] if a != "--report-only"]
    shared = args.data.resolve().parent.parent.name == "shared" and args.data.name == "imagenet-sample"
    args.data_shown = "../shared/data/imagenet-sample" if shared else str(args.data)
    args.data, args.model, args.out = args.data.resolve(), args.model.resolve(), args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    all_images = images(args.data)
    stages = [s for s in args.stages.split(",") if s]
    for s in stages:
        if s not in ORDER:
            parser.error(f"unknown stage {s!r}; choose from {', '.join(ORDER)}")
    if not args.report_only:
        for s in stages:
            run_stage(s, args, all_images)
    commands = [wc_command(args) if s == WORST_CASE else shown(command(s, args, all_images), args) for s in stages]
    text = report(args, all_images, commands) + kept_notes(args.doc)
    args.doc.write_text(text, encoding="utf-8")
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
