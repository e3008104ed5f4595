"""`onnxcam evaluate`: methods × metrics on labelled images, resumable through a JSONL of per-(image, method) results.

Each finished (image, method) pair is appended to the JSONL at once (one O_APPEND write), so a killed run loses
at most the pair in progress; a re-run with the same settings reuses every value already there.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import OnnxcamError, UsageError
from .metrics import METRICS as ALL_METRICS

BASELINES = ("random", "center")  # "no information" maps: every evaluation reports them


METRICS = {name: m for name, m in ALL_METRICS.items() if m.group is not None}  # what `onnxcam evaluate` reports
DEFAULT_METRICS = ("deletion", "insertion", "avg-drop", "increase", "gini", "top-k", "components")
CURVES = ("deletion", "insertion")


def parse_metrics(texts: Iterable[str]) -> list[str]:
    """Comma-separated and repeated --metric values, "all" for every metric; unknown names get a did-you-mean."""
    names: list[str] = []
    for text in texts:
        for name in (t.strip().lower() for t in text.split(",")):
            if name == "all":
                names.extend(METRICS)
            elif name in METRICS:
                names.append(name)
            elif name:
                close = difflib.get_close_matches(name, [*METRICS, "all"], n=2)
                hint = f"did you mean {' or '.join(close)}?" if close else f"choose from {', '.join(METRICS)}, all"
                raise UsageError(f"unknown metric {name!r}; {hint}")
    if not names:
        raise UsageError(f"--metric names no metric; choose from {', '.join(METRICS)}, all")
    return list(dict.fromkeys(names))


def read_labels(path: Path) -> dict[str, int]:
    """file name → class index from a CSV with the columns file,class_index (other columns are ignored)."""
    if not path.is_file():
        raise OnnxcamError(f"labels CSV not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as e:
        raise OnnxcamError(f"cannot read labels CSV {path}: {e}") from None
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not {"file", "class_index"} <= {f.strip() for f in reader.fieldnames}:
        raise OnnxcamError(f"labels CSV {path} needs a header with the columns file,class_index; "
                           f"got {','.join(reader.fieldnames or [])[:80]!r}")
    labels: dict[str, int] = {}
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        try:
            index = int(row["class_index"])
        except ValueError:
            raise OnnxcamError(f"labels CSV {path} line {line}: class_index {row['class_index'][:20]!r} is not an integer") \
                from None
        if index < 0 or not row["file"]:
            raise OnnxcamError(f"labels CSV {path} line {line}: needs a file name and a class_index >= 0")
        labels[row["file"]] = index
    return labels


def label_of(labels: dict[str, int], image: Path, csv_path: Path) -> int:
    """The class of an image: its row by path as given, else by file name."""
    for key in (str(image), image.as_posix(), image.name):
        if key in labels:
            return labels[key]
    raise OnnxcamError(f"labels CSV {csv_path} has no row for image {image.name}; add it or leave the image out")


@dataclass
class Settings:
    """What the values depend on; a JSONL record is reused only when its settings equal these."""

    model: str
    layer: str
    preprocessing: list
    metric_options: dict
    method_options: dict = field(default_factory=dict)  # method → its options

    def key(self, method: str) -> dict:
        return json.loads(json.dumps({"model": self.model, "layer": self.layer, "preprocessing": self.preprocessing,
                                      "metrics": self.metric_options, "options": self.method_options.get(method, {})}))


def method_parameters(name: str) -> list[str]:
    """The options a method takes, and batch_size, which every method takes."""
    from . import methods

    definition = methods.METHODS.get(name)
    return [f.name for f in dataclasses.fields(definition.options)] + ["batch_size"] if definition else []


def check_methods(names: Iterable[str]) -> list[str]:
    """The methods asked for, each once, then the baselines; unknown names get a did-you-mean (exit 2)."""
    from . import methods

    chosen = list(dict.fromkeys([*names, *BASELINES]))
    for name in chosen:
        methods.get(name)
    return chosen


# ------------------------------------------------------------------------------------------- computing one pair


@dataclass
class Job:
    """One (image, method) pair: the model input (1, ...), its map and what the metrics need."""

    ex: object
    x: np.ndarray
    saliency: np.ndarray  # (1, H, W) in [0, 1]
    targets: np.ndarray  # (1,)
    method: str
    options: dict
    params: dict  # metric options


def _deletion(job: Job, kind: str):
    from . import metrics

    f = metrics.deletion if kind == "deletion" else metrics.insertion
    c = f(job.ex, job.x, job.saliency, job.targets, step=job.params.get("step"), batch_size=job.params.get("batch_size"))
    return {kind: c.auc}, {kind: np.asarray(c.scores)[0]}


def _confidence(job: Job):
    from . import metrics

    drop, inc = metrics.confidence_change(job.ex, job.x, job.saliency, job.targets)
    return {"avg-drop": drop, "increase": inc}, {}


def _road(job: Job):
    from . import metrics

    r = metrics.road(job.ex, job.x, job.saliency, job.targets)
    return {"road-morf": r["morf"], "road-lerf": r["lerf"], "road": r["combined"]}, {}


def _sensitivity(job: Job):
    from . import metrics

    v = metrics.max_sensitivity(job.ex, job.x, job.targets, job.method, seed=job.params.get("seed", 0), **job.options)
    return {"max-sensitivity": v}, {}


def _convergence(job: Job):
    from . import methods, metrics

    if "steps" not in method_parameters(job.method):
        return {"step-convergence": None}, {}  # not a path method: not applicable
    options = dict(job.options)
    steps = options.pop("steps", methods.options(job.method).steps)
    return {"step-convergence": metrics.step_convergence(job.ex, job.x, job.targets, job.method, steps, **options)}, {}


def _structure(job: Job):
    from . import metrics

    count, size = metrics.connected_components(job.saliency)
    return {"gini": metrics.gini(job.saliency), "top-k": metrics.top_k_mass(job.saliency),
            "components": count, "component-size": size}, {}


GROUPS: dict[str, Callable] = {
    "deletion": lambda job: _deletion(job, "deletion"), "insertion": lambda job: _deletion(job, "insertion"),
    "confidence": _confidence, "road": _road, "sensitivity": _sensitivity, "convergence": _convergence,
    "structure": _structure,
}


def _number(v) -> float | None:
    if v is None:
        return None
    v = float(np.asarray(v).reshape(-1)[0])
    return v if math.isfinite(v) else None


def predicted_class(ex, x: np.ndarray) -> int:
    """The model's top-1 for one image: without labels every method explains this class."""
    graph = ex.session((), "logit")
    logits = next(iter(graph.stream(lambda r: x[r], 1, np.full(1, -1, np.int64), 1, []))).logits
    return int(np.argmax(logits[0]))


def evaluate_pair(ex, x: np.ndarray, method: str, target: int | None, wanted: list[str], options: dict,
                  params: dict) -> dict:
    """Explain one image with one method and compute the wanted metrics: {"target", "values", "curves", "seconds"}."""
    start = time.perf_counter()
    res = ex.explain(x, method=method, target=target, **options)
    if not np.isfinite(res.heatmap).all():
        raise OnnxcamError(f"{method} gave a map with NaN or infinite values")
    job = Job(ex, x, res.heatmap.astype(np.float32), np.asarray(res.target, np.int64), method, options, params)
    explained = time.perf_counter() - start
    values: dict = {}
    curves: dict = {}
    for group in dict.fromkeys(METRICS[m].group for m in wanted):
        v, c = GROUPS[group](job)
        values.update({k: _number(val) for k, val in v.items()})
        curves.update({k: [round(float(s), 6) for s in val] for k, val in c.items()})
    return {"target": int(res.target[0]), "values": {k: v for k, v in values.items() if k in wanted}, "curves": curves,
            "seconds": {"explain": round(explained, 3), "metrics": round(time.perf_counter() - start - explained, 3)}}


# ------------------------------------------------------------------------------------------- the resumable log


def pair_key(image: Path | str, method: str, requested: int | None, settings: dict) -> str:
    return json.dumps([os.path.abspath(image), method, requested, settings], sort_keys=True)


def known_values(records: list[dict]) -> dict[str, dict]:
    """pair key → the union of its recorded values and curves (later records win), and its error if it failed."""
    known: dict[str, dict] = {}
    for r in records:
        try:
            key = pair_key(r["image"], r["method"], r.get("requested"), r["settings"])
        except (KeyError, TypeError):
            continue
        entry = known.setdefault(key, {"values": {}, "curves": {}, "target": r.get("target")})
        entry["values"].update(r.get("values") or {})
        entry["curves"].update(r.get("curves") or {})
        entry["target"] = r.get("target", entry["target"])
        entry["error"] = r.get("error")  # a recorded failure is not retried; a later success clears it
    return known


# ------------------------------------------------------------------------------------------- summary, table, plot


def mean_se(values: list[float]) -> tuple[float | None, float | None, int]:
    v = np.array([x for x in values if x is not None], np.float64)
    if not len(v):
        return None, None, 0
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None
    return float(v.mean()), se, len(v)


def summarize(per_image: dict[str, dict[str, dict]], metrics: list[str], curves: dict[str, dict[str, list]]) -> dict:
    """per_image[method][image] = {metric: value} → means, standard errors, counts and mean curves per method."""
    out: dict = {"methods": {}, "stderr": {}, "n": {}, "curves": {}}
    for method, images in per_image.items():
        for name, target in (("methods", 0), ("stderr", 1), ("n", 2)):
            out[name][method] = {m: mean_se([v.get(m) for v in images.values()])[target] for m in metrics}
        out["curves"][method] = {}
        for kind in CURVES:
            rows = [c for c in curves.get(method, {}).get(kind, []) if c]
            if rows and len({len(r) for r in rows}) == 1:
                out["curves"][method][kind] = [round(float(s), 6) for s in np.mean(rows, axis=0)]
    return out


def fmt(mean: float | None, se: float | None) -> str:
    if mean is None:
        return "n/a"
    digits = 1 if abs(mean) >= 10 else 3
    return f"{mean:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else "")


def table(summary: dict, metrics: list[str], markdown: bool = False) -> str:
    """method × metric, mean ± standard error; the header says which direction is better (↑ / ↓)."""
    arrow = {"higher": " ↑", "lower": " ↓", "": ""}
    header = ["method", *[m + arrow[METRICS[m].better] for m in metrics]]
    rows = [[method, *[fmt(summary["methods"][method][m], summary["stderr"][method][m]) for m in metrics]]
            for method in summary["methods"]]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(metrics)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in [header, *rows])


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0), (90, 90, 200), (200, 160, 0),
           (0, 120, 120), (160, 0, 80)]


def curves_png(summary: dict) -> np.ndarray:
    """Mean deletion and insertion curves per method, drawn with OpenCV: two panels and a legend (RGB)."""
    pw, ph, m = 420, 320, 48
    methods = [k for k, v in summary["curves"].items() if v]
    img = np.full((ph + 2 * m, 2 * (pw + 2 * m) + 170, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for p, kind in enumerate(CURVES):
        ox, oy = m + p * (pw + 2 * m), m
        cv2.rectangle(img, (ox, oy), (ox + pw, oy + ph), (0, 0, 0), 1)
        for t in np.linspace(0, 1, 6):
            x, y = ox + int(t * pw), oy + ph - int(t * ph)
            cv2.line(img, (x, oy), (x, oy + ph), (225, 225, 225), 1)
            cv2.line(img, (ox, y), (ox + pw, y), (225, 225, 225), 1)
            cv2.putText(img, f"{t:.1f}", (x - 10, oy + ph + 16), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(img, f"{t:.1f}", (ox - 28, y + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        title = f"{kind}: mean target probability"
        cv2.putText(img, title, (ox, oy - 12), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        axis = f"fraction of pixels {'removed' if kind == 'deletion' else 'inserted'}"
        cv2.putText(img, axis, (ox + pw // 2 - 80, oy + ph + 34), font, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
        for i, method in enumerate(methods):
            curve = summary["curves"][method].get(kind)
            if not curve:
                continue
            s = np.clip(np.asarray(curve), 0, 1)
            pts = np.stack([ox + np.linspace(0, 1, len(s)) * pw, oy + ph - s * ph], 1).round().astype(np.int32)
            cv2.polylines(img, [pts], False, PALETTE[i % len(PALETTE)], 2 if method not in BASELINES else 1, cv2.LINE_AA)
    lx = 2 * (pw + 2 * m) + 4
    for i, method in enumerate(methods):
        y = m + 10 + 20 * i
        cv2.line(img, (lx, y), (lx + 24, y), PALETTE[i % len(PALETTE)], 2, cv2.LINE_AA)
        cv2.putText(img, method, (lx + 30, y + 4), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


# ------------------------------------------------------------------------------------------- a resumable run


def run(model, images, methods: list[str], *, json_path: Path, labels_csv: Path | None = None,
        metrics: list[str] = DEFAULT_METRICS, log_path: Path | None = None, layer: str = "auto", mean=None, std=None,
        size: int | None = None, layout: str | None = None, deletion_step: int | None = None, seed: int = 0,
        batch_size: int | None = None, device: str = "auto", method_options: dict[str, dict] | None = None,
        progress: Callable = iter, warn: Callable[[str], None] = lambda text: None,
        command: list[str] | None = None) -> dict:
    """Score `methods` on `images` and write the report (JSON at json_path, curves PNG beside it); returns the report.

    Resumable: each finished (image, method) goes to the JSONL log at once, and a run with the same settings
    computes only what is missing there. `progress` wraps the list of pairs to do (a progress bar); `warn` gets
    one-line notes (reused pairs, a pair that failed)."""
    from . import methods as registry
    from . import outputs, signals
    from .explainer import Explainer
    from .image import model_preprocessing, png_bytes, read_rgb, write_atomic
    from .metrics.common import refuse_non_images

    methods = check_methods(methods)
    method_opts = {m: (method_options or {}).get(m, {}) for m in methods}
    paths = list({os.path.abspath(p): Path(p) for p in reversed(images)}.values())[::-1]
    labels = read_labels(labels_csv) if labels_csv is not None else None
    for p in paths:
        if not p.is_file():
            raise OnnxcamError(f"image not found: {p}")
    ex = Explainer(model, layer=layer, device=device, input_size=(size, size) if size else None)
    prep = model_preprocessing(ex.model, mean, std, layout)
    refuse_non_images(ex.model)  # before any pair runs
    paths = signals.expand(paths, ex.model)  # a .npy stack: one item `name#k.npy` per sample (labels by that name)
    requested = {p: label_of(labels, p, labels_csv) if labels is not None else None for p in paths}
    classes = ex.num_classes
    for p, k in requested.items():
        if classes and k is not None and k >= classes:
            raise OnnxcamError(f"labels CSV {labels_csv}: class_index {k} of {p.name} is out of range: "
                               f"the model has {classes} classes (0..{classes - 1})")
    log_path = log_path or json_path.with_suffix(".jsonl")
    png_path = json_path.with_name(json_path.stem + "_curves.png")
    protected = {q.resolve() for q in [*paths, Path(model), *([labels_csv] if labels_csv else [])]}
    for target in (json_path, log_path, png_path):
        if target.resolve() in protected:
            raise OnnxcamError(f"output {target} would overwrite an input; choose another --json")
    if log_path.resolve() in {json_path.resolve(), png_path.resolve()}:
        raise OnnxcamError(f"--log {log_path} is also the summary or the curves file; choose another name")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        model=os.path.abspath(model) + f"#{os.path.getsize(model)}",
        layer=ex.layer.name if any(registry.get(m).needs_layer for m in methods) else None,
        preprocessing=[prep.size, prep.mean, prep.std, prep.layout],
        metric_options={"deletion_step": deletion_step, "seed": seed},
        method_options={m: registry.options(m, method_opts[m]).asdict() for m in methods})
    run_options = {m: {**method_opts[m], **({"batch_size": batch_size} if batch_size else {})} for m in methods}
    params = {"step": deletion_step, "batch_size": batch_size, "seed": seed}
    known = known_values(outputs.read_jsonl(log_path))
    keys = {(p, m): pair_key(p, m, requested[p], settings.key(m)) for p in paths for m in methods}
    todo = [(p, m) for p in paths for m in methods if not known.get(keys[p, m], {}).get("error")
            and any(k not in known.get(keys[p, m], {}).get("values", {}) for k in metrics)]
    if len(todo) < len(keys):
        warn(f"reusing {len(keys) - len(todo)} finished (image, method) pair(s) from {log_path}")
    inputs: dict[Path, np.ndarray] = {}
    for p, m in progress(todo):
        if p not in inputs:
            inputs.clear()
            x = signals.read_sample(p, ex.model) if signals.is_array(p) else prep(read_rgb(p))[0]
            if not np.isfinite(x).all():
                raise OnnxcamError(f"normalizing {p} with mean {prep.mean} and std {prep.std} gives NaN or infinite "
                                   "values; check --mean and --std")
            inputs[p] = x[None]
        entry = known.get(keys[p, m], {"values": {}, "curves": {}})
        missing = [k for k in metrics if k not in entry["values"]]
        try:
            # no label: each method explains the top-1 class its own forward rows find
            result = evaluate_pair(ex, inputs[p], m, requested[p], missing, run_options[m], params)
        except OnnxcamError as e:  # one pair's failure (say, an all-zero map) must not stop a long run
            result = {"target": requested[p], "values": {}, "curves": {}, "error": str(e)}
            warn(f"\nwarning: {p.name} {m}: {e}")
        record = {"image": os.path.abspath(p), "method": m, "requested": requested[p], "settings": settings.key(m),
                  **result}
        outputs.append_jsonl(log_path, record)
        known[keys[p, m]] = {"values": {**entry["values"], **result["values"]},
                             "curves": {**entry["curves"], **result["curves"]}, "target": result["target"],
                             "error": result.get("error")}
    per_image = {m: {str(p): {k: known[keys[p, m]]["values"].get(k) for k in metrics} for p in paths} for m in methods}
    curves = {m: {c: [known[keys[p, m]]["curves"].get(c) for p in paths] for c in CURVES if c in metrics} for m in methods}
    summary = summarize(per_image, metrics, curves)
    failures = [{"image": str(p), "method": m, "error": known[keys[p, m]]["error"]}
                for p in paths for m in methods if known.get(keys[p, m], {}).get("error")]
    report = {**summary, "metrics": metrics, "better": {k: METRICS[k].better for k in metrics},
              "images": [str(p) for p in paths],
              "targets": {str(p): known[keys[p, methods[0]]]["target"] for p in paths},
              "target_source": "labels" if labels is not None else "predicted", "per_image": per_image,
              "failures": failures,
              "settings": {m: settings.key(m) for m in methods}, "command": list(command if command is not None else sys.argv),
              "jsonl": str(log_path), "curves_png": str(png_path) if any(summary["curves"].values()) else None}
    write_atomic(json_path, (json.dumps(report, indent=1) + "\n").encode("utf-8"))
    if report["curves_png"]:
        write_atomic(png_path, png_bytes(curves_png(summary)))
    return report
