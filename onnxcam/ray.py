"""Explain and evaluate image datasets on Ray Data: an actor pool of Explainers, one Parquet row per (image, method).

Items — image paths (a folder, a list), or the rows of a `ray.data.Dataset` with a path or encoded-bytes column —
go through `Dataset.map_batches` to a pool of `_Worker` actors. Each actor loads the model and builds its ONNX
Runtime sessions once, prepares images exactly as `onnxcam explain` does (`model_preprocessing`, `read_rgb` or
`decode_rgb`), and writes the rows of each batch it finishes as one Parquet file (overlay PNGs, when asked for,
first), atomically: a temporary file, then a rename.

Exactly once, and resumable:

- An item's id hashes its path (for bytes without a path: its bytes); the settings key hashes everything its rows
  depend on (model file, layer, methods, options, preprocessing). Files are named `<kind>-<key>-<hash of the ids
  of the items inside>.parquet`. A run reads the ids already in `<kind>-<key>-*` and skips them.
- One file holds every row of its items, so an item is wholly in the output or not at all.
- Paths are cut into fixed chunks of `batch_images` items in source order, one Ray task each. A task Ray retries
  after its actor died (`max_restarts`, `max_task_retries`), or a chunk recomputed after an interrupted run (even
  one whose first try was still finishing), writes the same name and replaces the file, never a second copy.
- With a Dataset source Ray forms the batches: a retried task sees the same block, so the same holds; only a
  re-run over a Dataset that reads differently could cut batches otherwise. `read_results` drops duplicate
  (item, method) rows, identical by construction: a safety net, not the mechanism.
- A bad item (an unreadable image, a method that fails on it) gets rows with `error` set; it is not retried
  (delete its file to retry it).

The output folder must be writable from every worker (a local disk on one machine; a shared volume on a cluster).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import onnx

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import ray.data
    import ray.exceptions
except ImportError as e:  # one line, with the way out
    raise ImportError(f"onnxcam.ray needs Ray Data ({e}): pip install 'onnxcam[ray]'", name=e.name) from e

from . import evaluate as ev
from . import outputs
from .errors import OnnxcamError, UsageError
from .explainer import Explainer
from .image import Preprocessing, decode_rgb, model_preprocessing, overlay, png_bytes, read_rgb, write_atomic
from .layers import resolve_layer
from .model import load_model

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
OVERLAYS = "overlays"
MAX_SHIPPED_MODEL = 1 << 30  # larger models (and external data) are read from their path on every worker


# ------------------------------------------------------------------------------------------- what a run is


@dataclass(frozen=True)
class Config:
    """Everything a worker needs, pickled once per actor."""

    kind: str  # "explain" | "evaluate"
    model: str  # absolute path
    model_ref: object  # ray.ObjectRef of the model file's bytes, or None: read `model` on the worker
    layer: str
    input_size: tuple[int, int] | None
    device: str
    threads: int
    prep: Preprocessing
    methods: tuple[str, ...]
    options: dict  # method → its options
    settings: dict  # method → the JSON settings its rows record
    key: str
    out: str
    target: int | None = None
    names: list[str] | None = None
    overlays: bool = False
    metrics: tuple[str, ...] = ()
    params: dict = field(default_factory=dict)  # metric options
    labels: dict | None = None  # file → class index (evaluate)
    labels_name: str = "labels"  # the CSV they came from, for error messages
    image_column: str | None = None
    path_column: str | None = None
    label_column: str | None = None
    test_hook: tuple[str, str, str] | None = None  # tests: ("exit" | "raise", file name, marker path), once


@dataclass
class RunResult:
    """What a run did; its rows are `read_results(out, kind, settings_key)`."""

    out: Path
    kind: str
    settings_key: str
    computed: int = 0  # items computed by this run (their rows written)
    failed: int = 0  # of those, items with an error row
    skipped: int = 0  # items already in the output
    seconds: float = 0.0
    summary: dict | None = None  # evaluate: means, standard errors, counts and curves per method
    table: str = ""  # evaluate: the method × metric table


@dataclass(frozen=True)
class Item:
    id: str
    file: str
    data: bytes | None = None  # encoded image; None: read `file`
    label: int | None = None


def item_id(path: str | None = None, data: bytes | None = None) -> str:
    """Stable across runs and machines: the path as given (absolute for folders and lists), else the bytes."""
    h = hashlib.sha1(b"path\0" + path.encode("utf-8", "surrogatepass")) if path else hashlib.sha1(b"bytes\0" + (data or b""))
    return h.hexdigest()[:24]


def settings_key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------- public API


def explain_dataset(source, model: str | os.PathLike, methods: Iterable[str] = ("gradcam",),
                    out: str | os.PathLike = "onnxcam-out", *, layer: str = "auto", target: int | None = None,
                    labels: str | os.PathLike | None = None, overlays: bool = False, mean=None, std=None,
                    size: int | None = None, layout: str | None = None, device: str = "auto",
                    concurrency: int | None = None, num_cpus: float = 1, num_gpus: float = 0, batch_images: int = 16,
                    max_restarts: int = 3, max_task_retries: int = 3, image_column: str | None = None,
                    progress: Callable[[int], None] | None = None, _test_hook: tuple[str, str, str] | None = None,
                    **options) -> RunResult:
    """Explain every image of `source` with each method; rows in `out/explain-<key>-*.parquet` (see `read_results`).

    Row columns: item, file, method, layer, target, top5, map (the raw map, flattened; `map_shape`), overlay,
    seconds, error, settings, settings_key. `options` are method options (steps, batch_size, ...), each passed to
    the methods that take it."""
    methods = _check_methods(methods)
    m, layer_name, prep = _prepare(model, layer, mean, std, size, layout, methods)
    per_method = _options_for(methods, options)
    names = _label_names(model, m, labels)
    common = {"model": _model_id(model), "layer": layer_name, "methods": list(methods), "target": target,
              "preprocessing": [list(prep.size), list(prep.mean), list(prep.std), prep.layout]}
    settings = {k: json.loads(json.dumps({**common, "options": _result_options(per_method[k])})) for k in methods}
    config = Config("explain", os.path.abspath(model), None, layer_name, _size(size), device, _threads(num_cpus), prep,
                    methods, per_method, settings, settings_key(settings), str(out), target=target, names=names,
                    overlays=overlays, image_column=image_column, test_hook=_test_hook)
    return _run(config, source, _Pool(concurrency, num_cpus, num_gpus, batch_images, max_restarts, max_task_retries),
                progress)


def evaluate_dataset(source, model: str | os.PathLike, methods: Iterable[str] = ("gradcam",),
                     out: str | os.PathLike = "onnxcam-eval", *, metrics: Iterable[str] = ev.DEFAULT_METRICS,
                     labels: str | os.PathLike | dict | None = None, label_column: str | None = None,
                     deletion_step: int | None = None, seed: int = 0, summary_path: str | os.PathLike | None = None,
                     layer: str = "auto", mean=None, std=None, size: int | None = None, layout: str | None = None,
                     device: str = "auto", concurrency: int | None = None, num_cpus: float = 1, num_gpus: float = 0,
                     batch_images: int = 16, max_restarts: int = 3, max_task_retries: int = 3,
                     image_column: str | None = None, progress: Callable[[int], None] | None = None,
                     _test_hook: tuple[str, str, str] | None = None, **options) -> RunResult:
    """`onnxcam evaluate` over a dataset: per (image, method) the metrics, as rows of `out/evaluate-<key>-*.parquet`;
    then the method × metric summary, computed from those files, in `summary_path` (default out/summary.json).

    The baselines random and center are always added; `labels` (a file,class_index CSV or a dict) or a Dataset's
    `label_column` give the class to explain, else the predicted one."""
    methods = tuple(ev.check_methods(methods))
    m, layer_name, prep = _prepare(model, layer, mean, std, size, layout, methods)
    metrics = tuple(ev.parse_metrics(metrics))
    per_method = _options_for(methods, options, ignore=("batch_size",))
    table = ev.read_labels(Path(labels)) if isinstance(labels, (str, os.PathLike)) else labels
    base = ev.Settings(model=_model_id(model), layer=layer_name,
                       preprocessing=[list(prep.size), list(prep.mean), list(prep.std), prep.layout],
                       metric_options={"deletion_step": deletion_step, "seed": seed},
                       method_options={k: _result_options(per_method[k]) for k in methods})
    settings = {k: base.key(k) for k in methods}
    run_settings = {"settings": settings, "metrics": list(metrics), "label_column": label_column,
                    "labels": hashlib.sha1(json.dumps(sorted((table or {}).items())).encode()).hexdigest()}
    config = Config("evaluate", os.path.abspath(model), None, layer_name, _size(size), device, _threads(num_cpus), prep,
                    methods, per_method, settings, settings_key(run_settings), str(out), metrics=metrics,
                    params={"step": deletion_step, "batch_size": options.get("batch_size"), "seed": seed},
                    labels=table, labels_name=str(labels) if isinstance(labels, (str, os.PathLike)) else "labels",
                    image_column=image_column, label_column=label_column, test_hook=_test_hook)
    result = _run(config, source, _Pool(concurrency, num_cpus, num_gpus, batch_images, max_restarts, max_task_retries),
                  progress)
    result.summary, result.table = write_summary(Path(out), config.key, methods, metrics,
                                                 Path(summary_path) if summary_path else Path(out) / "summary.json")
    return result


def read_results(out: str | os.PathLike, kind: str = "explain", settings_key: str | None = None,
                 columns: list[str] | None = None) -> pa.Table:
    """The rows of a run (all runs in `out` when settings_key is None), one per (item, method, settings_key)."""
    files = sorted(Path(out).glob(f"{kind}-{settings_key or '*'}-*.parquet"))
    keys = ["item", "method", "settings_key"]
    wanted = None if columns is None else list(dict.fromkeys([*keys, *columns]))
    if not files:
        return _schema(kind).empty_table().select(wanted or _schema(kind).names)
    table = pa.concat_tables([pq.read_table(f, columns=wanted) for f in files])
    first: dict[tuple, int] = {}
    for i, k in enumerate(zip(*(table[c].to_pylist() for c in keys))):
        first.setdefault(k, i)
    return table if len(first) == len(table) else table.take(sorted(first.values()))


def load_map(row: dict) -> np.ndarray:
    """The raw map of one row (as `read_results(...).to_pylist()` gives it), in its shape."""
    return np.asarray(row["map"], np.float32).reshape(row["map_shape"])


# ------------------------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class _Pool:
    concurrency: int | None
    num_cpus: float
    num_gpus: float
    batch_images: int
    max_restarts: int
    max_task_retries: int


def _run(config: Config, source, pool: _Pool, progress: Callable[[int], None] | None) -> RunResult:
    """Skip what `out` holds, stream the rest through the actor pool, count what came back."""
    start = time.perf_counter()
    out = Path(config.out)
    (out / OVERLAYS if config.overlays else out).mkdir(parents=True, exist_ok=True)
    for folder in (out, out / OVERLAYS):
        if folder.is_dir():
            outputs.remove_stale_parts(folder)
    done = done_items(out, config.kind, config.key)
    result = RunResult(out, config.kind, config.key)
    ds, worker_done, result.skipped, columns = _dataset(source, config, done, pool.batch_images)
    if ds is None:
        return result
    _init_ray()
    config = _replace(config, **{k: v for k, v in columns.items() if k != "tasks"})
    if config.model_ref is None and (ref := _ship_model(config.model)) is not None:
        config = _replace(config, model_ref=ref)
    with warnings.catch_warnings():  # Ray >= 2.60 calls these "ray_remote_args" deprecated, yet names no replacement
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        mapped = ds.map_batches(
            _Worker, fn_constructor_kwargs={"config": config, "done": worker_done},
            batch_size=1 if config.image_column == "paths" else pool.batch_images, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(pool.concurrency or _pool_size(pool), columns.get("tasks", 1 << 30))),
            num_cpus=pool.num_cpus, num_gpus=pool.num_gpus or None,
            max_restarts=pool.max_restarts, max_task_retries=pool.max_task_retries)  # bounded: a poison item ends
    counts: Counter = Counter()
    failure = None
    try:
        for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
            counts.update(str(s) for s in batch["status"])
            if progress is not None:
                progress(counts["done"] + counts["error"])
    except ray.exceptions.RayError as e:  # retries spent (an image that kills its worker every time, a lost cluster)
        failure = _cause(e)
    if failure is not None:
        del mapped
        gc.collect()  # the failed run's dataset and traceback hold its actors (and their CPUs) until collected
        raise OnnxcamError(f"the Ray run failed after {counts['done'] + counts['error']} item(s): {failure}; what it "
                           f"finished stays in {out}/ and a re-run resumes there")
    result.computed, result.failed = counts["done"] + counts["error"], counts["error"]
    result.skipped += counts["skipped"]
    result.seconds = time.perf_counter() - start
    return result


def _cause(e: BaseException) -> str:
    """The worker's own error line from a Ray failure (whose message wraps it in a traceback and advice on retries)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", x).strip() for x in str(e).splitlines()]
    named = [x for x in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Exit)\w*: ", x) and not x.startswith("ray.")]
    return (named or [x for x in lines if x] or [type(e).__name__])[-1][:300]


def done_items(out: Path, kind: str, key: str) -> set[str]:
    """Ids of the items whose rows `out` already holds for these settings."""
    ids: set[str] = set()
    for f in sorted(Path(out).glob(f"{kind}-{key}-*.parquet")):
        ids.update(pq.read_table(f, columns=["item"])["item"].to_pylist())
    return ids


def _dataset(source, config: Config, done: set[str], chunk: int):
    """(dataset, ids the workers must skip, items skipped here, the columns to read); paths become fixed chunks."""
    if isinstance(source, ray.data.Dataset):
        return source, frozenset(done), 0, _columns(source, config)
    paths = image_paths(source)
    if not paths:
        raise OnnxcamError(f"no images found in {str(source)[:200]}")
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    todo = [c for c in chunks if any(item_id(p) not in done for p in c)]
    skipped = len(paths) - sum(len(c) for c in todo)
    if not todo:
        return None, frozenset(), skipped, {}
    _init_ray()
    worker_done = frozenset(i for c in todo for p in c if (i := item_id(p)) in done)
    ds = ray.data.from_items([{"paths": c} for c in todo], override_num_blocks=len(todo))
    return ds, worker_done, skipped, {"image_column": "paths", "tasks": len(todo)}  # no more actors than chunks


def _columns(ds, config: Config) -> dict:
    """The image column (encoded bytes or a path), the path beside bytes, the label column: checked here, once."""
    schema = ds.schema()
    types = dict(zip(schema.names, schema.types)) if schema is not None else {}
    readable = [c for c, t in types.items() if _is_text_or_bytes(t)]
    image = config.image_column or next((c for c in ("bytes", "path", "image", "file") if c in readable), None)
    if image not in readable:
        raise OnnxcamError(f"the dataset needs an image column of paths or encoded bytes (columns: "
                           f"{', '.join(types) or 'none'}); read images with ray.data.read_binary_files(..., "
                           "include_paths=True), or name the column with image_column=")
    if config.label_column and config.label_column not in types:
        raise OnnxcamError(f"the dataset has no column {config.label_column!r} (label_column)")
    path = next((c for c in ("path", "file") if c in readable and c != image), None)
    return {"image_column": image, "path_column": path}


def _is_text_or_bytes(t) -> bool:
    t = getattr(t, "pyarrow_type", t)
    return isinstance(t, pa.DataType) and (pa.types.is_string(t) or pa.types.is_large_string(t)
                                            or pa.types.is_binary(t) or pa.types.is_large_binary(t)) or t in (str, bytes)


def image_paths(source) -> list[str]:
    """A folder (its images, recursively, sorted), a file, or a list of both: absolute paths, each once, in order."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    paths: list[str] = []
    for s in items:
        p = Path(s)
        if p.is_dir():
            paths += sorted(str(f.resolve()) for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                            and f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
        else:
            paths.append(os.path.abspath(p))
    return list(dict.fromkeys(paths))


def _prepare(model, layer: str, mean, std, size: int | None, layout: str | None, methods: tuple[str, ...]):
    """Load the model on the driver first: a bad model, layer or preprocessing fails here, in one line."""
    if not Path(model).is_file():
        raise OnnxcamError(f"model not found: {model}")
    m = load_model(model, _size(size))
    from . import methods as registry

    needed = any(registry.get(x).needs_layer for x in methods)
    return m, resolve_layer(m, layer).name if needed else None, model_preprocessing(m, _tuple(mean), _tuple(std), layout)


def _check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """Known names, each once; a typo fails on the driver, before any actor starts."""
    from . import methods as registry

    chosen = tuple(dict.fromkeys([methods] if isinstance(methods, str) else methods))
    if not chosen:
        raise UsageError("no method given")
    for name in chosen:
        registry.get(name)
    return chosen


def _result_options(options: dict) -> dict:
    """The options the results depend on: batch_size bounds memory only (as in `onnxcam explain`'s settings)."""
    return {k: v for k, v in options.items() if k != "batch_size"}


def _options_for(methods: tuple[str, ...], options: dict, ignore: tuple[str, ...] = ()) -> dict[str, dict]:
    """Each method gets the options it takes; an option no method takes is an error, not silently dropped."""
    for name in options:
        if name not in ignore and not any(name in ev.method_parameters(x) for x in methods):
            raise UsageError(f"option {name!r} applies to none of {', '.join(methods)}")
    return {x: {k: v for k, v in options.items() if v is not None and k in ev.method_parameters(x)} for x in methods}


def _label_names(model, m, labels) -> list[str] | None:
    props = {p.key: p.value for p in m.proto.metadata_props}
    path = Path(labels) if labels is not None else outputs.metadata_labels(model, props)
    if path is None:
        return None
    if not path.is_file():
        raise OnnxcamError(f"label file not found: {path}")
    return path.read_text(encoding="utf-8").splitlines()


def _model_id(model) -> str:
    return os.path.abspath(model) + f"#{os.path.getsize(model)}"


def _size(size: int | None) -> tuple[int, int] | None:
    return (size, size) if size else None


def _tuple(values) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in np.atleast_1d(values))


def _threads(num_cpus: float) -> int:
    return max(1, int(num_cpus))


def _replace(config: Config, **changes) -> Config:
    from dataclasses import replace

    return replace(config, **changes)


def _init_ray() -> None:
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING)


def _pool_size(pool: _Pool) -> int:
    """As many actors as the cluster has room for now."""
    resources = ray.cluster_resources()
    per = ("GPU", pool.num_gpus) if pool.num_gpus else ("CPU", pool.num_cpus or 1)
    return max(1, int(resources.get(per[0], 1) // per[1]))


def _ship_model(path: str):
    """The model file's bytes in the object store, so workers need no copy of it; None for external data."""
    if os.path.getsize(path) > MAX_SHIPPED_MODEL:
        return None
    proto = onnx.load(path, load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        return None
    return ray.put(Path(path).read_bytes())


# ------------------------------------------------------------------------------------------- the workers


class _Worker:
    """One actor of the pool: the Explainer (its sessions) is built once; each call writes one Parquet file."""

    def __init__(self, config: Config, done: frozenset[str]):
        self.config, self.done = config, done
        model = onnx.load_from_string(ray.get(config.model_ref)) if config.model_ref is not None else config.model
        self.ex = Explainer(model, layer=config.layer, device=config.device, input_size=config.input_size,
                            threads=config.threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = list(_items(batch, self.config))
        todo = [it for it in items if it.id not in self.done]
        rows: list[dict] = []
        for it in todo:
            self._test_hook(it)
            rows += self._rows(it)
        if rows:
            write_part(Path(self.config.out), self.config.kind, self.config.key, [it.id for it in todo], rows)
        failed = {r["item"] for r in rows if r.get("error")}
        status = ["skipped" if it.id in self.done else "error" if it.id in failed else "done" for it in items]
        return {"item": np.array([it.id for it in items], dtype=object), "status": np.array(status, dtype=object)}

    def _rows(self, it: Item) -> list[dict]:
        c = self.config
        base = {"item": it.id, "file": it.file, "settings_key": c.key}
        try:
            x, view = self._input(it)
            requested, target = self._target(it, x) if c.kind == "evaluate" else (None, c.target)
        except Exception as e:  # an unreadable image is one item's error, not the run's
            return [{**base, "method": m, "settings": json.dumps(c.settings[m]), "error": _message(e)} for m in c.methods]
        rows = []
        for m in c.methods:
            row = {**base, "method": m, "settings": json.dumps(c.settings[m])}
            if c.kind == "evaluate":
                row.update({"requested": requested, "target": target})
            try:
                row.update(self._explain(it, x, view, m) if c.kind == "explain" else self._evaluate(x, m, target))
            except Exception as e:  # a method failing on one image, likewise
                row["error"] = _message(e)
            rows.append(row)
        return rows

    def _input(self, it: Item) -> tuple[np.ndarray, np.ndarray]:
        """Exactly `onnxcam explain`'s preprocessing."""
        rgb = read_rgb(it.file) if it.data is None else decode_rgb(it.data, it.file or it.id)
        x, view = self.config.prep(rgb)
        if not np.isfinite(x).all():
            p = self.config.prep
            raise OnnxcamError(f"normalizing {it.file} with mean {p.mean} and std {p.std} gives NaN or infinite values")
        return x, view

    def _target(self, it: Item, x: np.ndarray) -> tuple[int | None, int]:
        """(the labelled class or None, the class to explain): as `onnxcam evaluate`, the predicted one without labels."""
        c = self.config
        requested = it.label
        if requested is None and c.labels is not None:
            requested = ev.label_of(c.labels, Path(it.file), Path(c.labels_name))
        return requested, int(requested) if requested is not None else ev.predicted_class(self.ex, x[None])

    def _explain(self, it: Item, x: np.ndarray, view: np.ndarray, method: str) -> dict:
        c = self.config
        start = time.perf_counter()
        res = self.ex.explain(x[None], method=method, target=c.target, **c.options[method])
        cam = (res.cam if res.cam is not None else res.heatmap)[0].astype(np.float32)
        row = {"layer": c.layer, "target": int(res.target[0]), "top5": outputs.top5(res.logits[0], c.names),
               "map": cam.ravel(), "map_shape": list(cam.shape), "seconds": time.perf_counter() - start}
        if c.overlays:
            name = f"{outputs.safe_stem(Path(it.file).stem or 'image')}-{it.id[:8]}_{outputs.safe_stem(method)}.png"
            write_atomic(Path(c.out) / OVERLAYS / name, png_bytes(overlay(view, res.heatmap[0])))
            row["overlay"] = f"{OVERLAYS}/{name}"
        return row

    def _evaluate(self, x: np.ndarray, method: str, target: int) -> dict:
        c = self.config
        r = ev.evaluate_pair(self.ex, x[None], method, target, list(c.metrics), c.options[method], c.params)
        return {"target": r["target"], **{k: r["values"].get(k) for k in ev.METRICS},
                **{f"curve_{k}": r["curves"].get(k) for k in ev.CURVES},
                "seconds_explain": r["seconds"]["explain"], "seconds_metrics": r["seconds"]["metrics"]}

    def _test_hook(self, it: Item) -> None:
        """Tests, on the chosen item and only the first time: the actor process dies ("exit", as on a lost node; Ray
        retries its task) or the run fails ("raise", as on a driver stopped halfway; a re-run resumes)."""
        hook = self.config.test_hook
        if hook and Path(it.file).name == hook[1] and not os.path.exists(hook[2]):
            Path(hook[2]).write_text(str(os.getpid()))
            if hook[0] == "exit":
                os._exit(1)
            raise RuntimeError(f"test hook: the run stops at {it.file}")


def _items(batch: dict[str, np.ndarray], c: Config) -> Iterator[Item]:
    if c.image_column == "paths":  # our chunks of absolute paths
        for chunk in batch["paths"]:
            for p in chunk:
                yield Item(item_id(str(p)), str(p))
        return
    values = batch[c.image_column]
    paths = batch[c.path_column] if c.path_column else [None] * len(values)
    labels = batch[c.label_column] if c.label_column else [None] * len(values)
    for value, path, label in zip(values, paths, labels):
        label = None if label is None or (isinstance(label, float) and np.isnan(label)) else int(label)
        if isinstance(value, (bytes, bytearray, np.bytes_)):
            data = bytes(value)
            yield Item(item_id(str(path)) if path else item_id(data=data), str(path or ""), data, label)
        else:
            yield Item(item_id(str(value)), str(value), None, label)


def _message(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return text if isinstance(e, OnnxcamError) else f"{type(e).__name__}: {text}"


# ------------------------------------------------------------------------------------------- Parquet


def _schema(kind: str) -> pa.Schema:
    common = [("item", pa.string()), ("file", pa.string()), ("method", pa.string())]
    tail = [("error", pa.string()), ("settings", pa.string()), ("settings_key", pa.string())]
    if kind == "explain":
        top = pa.list_(pa.struct([("class", pa.int64()), ("prob", pa.float64()), ("name", pa.string())]))
        middle = [("layer", pa.string()), ("target", pa.int64()), ("top5", top), ("map", pa.list_(pa.float32())),
                  ("map_shape", pa.list_(pa.int32())), ("overlay", pa.string()), ("seconds", pa.float64())]
    else:
        middle = [("requested", pa.int64()), ("target", pa.int64()), *[(k, pa.float64()) for k in ev.METRICS],
                  *[(f"curve_{k}", pa.list_(pa.float64())) for k in ev.CURVES],
                  ("seconds_explain", pa.float64()), ("seconds_metrics", pa.float64())]
    return pa.schema([*common, *middle, *tail])


def write_part(out: Path, kind: str, key: str, ids: list[str], rows: list[dict]) -> Path:
    """One batch's rows as one file named by the ids inside it: a retried batch replaces its file."""
    name = hashlib.sha1("\n".join(sorted(ids)).encode()).hexdigest()[:16]
    path = out / f"{kind}-{key}-{name}.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=_schema(kind)), sink)
    write_atomic(path, sink.getvalue().to_pybytes())
    return path


# ------------------------------------------------------------------------------------------- evaluate's summary


def write_summary(out: Path, key: str, methods: tuple[str, ...], metrics: tuple[str, ...], path: Path) -> tuple[dict, str]:
    """The aggregate of an evaluation, from its Parquet rows: summary JSON, curves PNG beside it, the table."""
    rows = read_results(out, "evaluate", key).to_pylist()
    per_image = {m: {} for m in methods}
    curves = {m: {c: [] for c in ev.CURVES if c in metrics} for m in methods}
    failures = []
    for r in rows:
        per_image[r["method"]][r["item"]] = {k: r[k] for k in metrics}
        for c in curves[r["method"]]:
            curves[r["method"]][c].append(r[f"curve_{c}"])
        if r["error"]:
            failures.append({"file": r["file"], "method": r["method"], "error": r["error"]})
    summary = ev.summarize(per_image, list(metrics), curves)
    report = {**summary, "metrics": list(metrics), "better": {k: ev.METRICS[k].better for k in metrics},
              "items": len({r["item"] for r in rows}), "failures": failures, "settings_key": key, "parquet": str(out)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(report, indent=1) + "\n").encode("utf-8"))
    if any(summary["curves"].values()):
        write_atomic(path.with_name(path.stem + "_curves.png"), png_bytes(ev.curves_png(summary)))
    return report, ev.table(summary, list(metrics))


# ------------------------------------------------------------------------------------------- the CLI's side


@contextlib.contextmanager
def cluster(address: str) -> Iterator[None]:
    """`--ray` joins ADDRESS ('auto': the running cluster), or starts a local Ray ('local'); shut down after."""
    if ray.is_initialized():
        yield
        return
    local = address in ("", "local")
    try:
        ray.init(address="local" if local else address, logging_level=logging.WARNING,
                 **({"include_dashboard": False} if local else {}))
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise OnnxcamError(f"cannot start or join Ray at {address!r}: {str(e).splitlines()[0][:200]}") from None
    try:
        yield
    finally:
        ray.shutdown()


def explain_command(address: str, model: str, images: Iterable[str], methods: Iterable[str], *, out: str,
                    batch_size: int | None = None, method_options: dict | None = None, **kwargs) -> None:
    """`onnxcam explain MODEL IMAGE_OR_FOLDER... --ray [ADDRESS]`: Parquet rows and overlay PNGs in --out."""
    methods = list(dict.fromkeys(methods))
    with cluster(address):
        r = explain_dataset(list(images), model, methods, out, overlays=True, **kwargs,
                            **_cli_options(methods, batch_size=batch_size, **(method_options or {})))
    click.echo(f"wrote {r.computed} image(s) x {len(methods)} method(s) to {out}/ as Parquet "
               f"(explain-{r.settings_key}-*.parquet)" + (f"; {r.skipped} already there" if r.skipped else ""))
    if r.failed:
        click.echo(f"{r.failed} image(s) failed; their rows carry the error", err=True)


def evaluate_command(address: str, model: str, images: Iterable[str], methods: Iterable[str], *, metrics: Iterable[str],
                     json_path: Path, log_path: Path | None, batch_size: int | None = None,
                     method_options: dict | None = None, **kwargs) -> None:
    """`onnxcam evaluate ... --ray [ADDRESS]`: per-pair rows in Parquet (the --log folder), the summary in --json."""
    folder = log_path or json_path.with_suffix(".parquet")
    chosen = ev.check_methods(methods)
    with cluster(address):
        r = evaluate_dataset(list(images), model, chosen, folder, metrics=ev.parse_metrics(metrics), summary_path=json_path,
                             **kwargs, **_cli_options(chosen, batch_size=batch_size, **(method_options or {})))
    click.echo(r.table)
    click.echo(f"{r.summary['items']} image(s) x {len(chosen)} method(s); wrote {json_path} (per pair: {folder}/)")
    if r.summary["failures"]:
        click.echo(f"{len(r.summary['failures'])} (image, method) pair(s) failed and are left out of the means; "
                   f"their errors are under \"failures\" in {json_path}", err=True)


def _cli_options(methods: Iterable[str], **options) -> dict:
    """As without --ray: an option goes to the methods that take it, and is dropped when none does."""
    return {k: v for k, v in options.items() if v is not None and any(k in ev.method_parameters(m) for m in methods)}
