"""The `onnxcam` command: one-line errors, exit 1 for a failed run and 2 for bad usage."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import click
import numpy as np
import onnx

from . import __version__, outputs, signals, tasks
from . import methods as registry
from .errors import OnnxcamError
from .evaluate import DEFAULT_METRICS, METRICS
from .explainer import Explainer, no_signal
from .image import Preprocessing, model_preprocessing, montage, overlay, png_bytes, read_rgb, write_atomic
from .layers import candidate_layers
from .methods.cli import given, method_options, per_method
from .model import load_model
from .runner import DEFAULT_BATCH, MAX_BATCH
from .runtime import DEVICES, working_providers
from .tasks import TASKS


class Group(click.Group):
    """Turns every error into one line on stderr (never a traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OnnxcamError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:  # bad options of a command: one line too, with where to look
            where = f"; see '{e.ctx.command_path} --help'" if e.ctx is not None else ""
            click.echo(f"error: {' '.join(e.format_message().split()).rstrip('.')}{where}", err=True)
            sys.exit(e.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except OSError as e:  # a full disk, a folder we may not write: not a bug in onnxcam
            click.echo(f"error: {e.strerror or e}{f': {str(e.filename)[:200]}' if e.filename else ''}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except MemoryError:
            click.echo("error: out of memory; use a smaller --batch-size or fewer images", err=True)
            sys.exit(1)
        except Exception as e:  # a bug in onnxcam: still one line, with what to report
            click.echo(f"error: internal error {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                       "(please report this with the model)", err=True)
            sys.exit(1)


MODEL = click.argument("model", type=click.Path(dir_okay=False))
MAX_SIDE = 16384  # --size: input side length
DEVICE = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                      help="Execution provider: auto (the best one that works here), cpu; cuda and tensorrt are "
                           "experimental (built and tested on the CPU, not yet measured on a GPU).")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxcam")
@click.option("--verbose", is_flag=True, help="Show ONNX Runtime's own warnings and errors on stderr "
              "(as ONNXCAM_LOG=warning; ONNXCAM_LOG=verbose|info|warning|error picks the level).")
def main(verbose: bool):
    """Explain ONNX image models with gradient heatmaps, using ONNX Runtime only.

    Example: onnxcam layers models/efficientnet_lite0.onnx
    """
    if verbose:
        os.environ.setdefault("ONNXCAM_LOG", "warning")  # the command owns its process; read by every session


@main.command()
@MODEL
def info(model):
    """Inputs, outputs, opset, IR version and the execution providers that work here.

    Example: onnxcam info models/efficientnet_lite0.onnx
    """
    m = load_model(model)  # validates first: the raw parse below never sees a file load_model refused
    raw = onnx.load(model, load_external_data=False) if _is_file(model) else None
    g = m.proto.graph
    inits = {t.name for t in g.initializer}

    def fmt(vi):
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in tt.shape.dim]
        return f"  {vi.name}: {onnx.TensorProto.DataType.Name(tt.elem_type).lower()} {dims}"

    click.echo(f"model: {model}")
    click.echo("inputs:")
    click.echo("\n".join(fmt(i) for i in g.input if i.name not in inits))
    click.echo("outputs:")
    click.echo("\n".join(fmt(o) for o in g.output))
    click.echo(f"image input: {m.image_input} ({m.layout}); score output: {m.score_output}"
               + (f" (softmax of {m.logits})" if m.output_is_prob else ""))
    click.echo(f"opset: {raw.opset_import[0].version if raw else m.opset}; IR version: {raw.ir_version if raw else '?'}"
               f" (loaded as {m.proto.ir_version}); nodes: {len(raw.graph.node) if raw else len(g.node)}"
               f" ({len(g.node)} after folding)")
    click.echo(f"execution providers working here: {', '.join(working_providers())}")


@main.command("check")
@MODEL
@click.option("--size", type=click.IntRange(1, MAX_SIDE), default=None,
              help="Input side length for models with a dynamic input size.")
@click.option("--directions", type=click.IntRange(1, 64), default=3, show_default=True,
              help="Random directions per finite-difference check.")
def check_command(model, size, directions):
    """What onnxcam can do with MODEL, and its gradients against float64 finite differences; exit 1 when one is off.

    Example: onnxcam check models/efficientnet_lite0.onnx
    """
    from .check import check

    r = check(model, _input_size(size), directions=directions)
    click.echo(f"model: {r.model}")
    click.echo(f"image input: {r.image_input} {list(r.input_shape)} ({r.layout}); explained score: {r.score}")
    click.echo(f"layers: {len(r.layers)} candidates, auto = {r.auto_layer}")
    click.echo("ops without gradient rules: "
               + (", ".join(f"{op} ({node})" for op, node in r.unsupported) if r.unsupported else "none"))
    click.echo("methods:")
    for name, error in r.methods.items():
        click.echo(f"  {name:<20} {'ok' if error is None else 'fails: ' + error}")
    if r.skipped:
        click.echo(f"gradient check: skipped ({r.skipped})")
    else:
        click.echo(f"gradient check ({r.gradients[0].oracle} central differences, {directions} random directions):")
        click.echo(f"  {'tensor':<40} {'max rel err':>12} {'tolerance':>10}  result")
        for g in r.gradients:
            click.echo(f"  {g.wrt[:40]:<40} {g.error:>12.1e} {g.tolerance:>10.0e}  {'pass' if g.passed else 'FAIL'}")
    if not r.ok:
        raise click.exceptions.Exit(1)


def _is_file(path: str) -> bool:
    return Path(path).is_file()


@main.command()
@MODEL
@click.option("--json", "as_json", is_flag=True, help="Print the layers as JSON.")
@click.option("--size", type=click.IntRange(1, MAX_SIDE), default=None,
              help="Input side length for models with a dynamic input size.")
def layers(model, as_json, size):
    """Candidate layers (spatial feature maps), input → output; "auto" marks the default choice.

    Example: onnxcam layers models/efficientnet_lite0.onnx --json
    """
    ex = Explainer(model, input_size=_input_size(size), output=0)  # any output: detectors and segmenters list too
    m = ex.model
    found = candidate_layers(m)
    autos = [x.name for x in ex.explained_layers] if found else []
    auto = ", ".join(autos) or None
    outs = [{"name": o.name, "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param or "?"
                                       for d in o.type.tensor_type.shape.dim]} for o in m.proto.graph.output]
    if as_json:
        rows = [{"name": x.name, "op": x.op, "shape": list(x.shape), "layout": x.layout, "auto": x.name in autos}
                for x in found]
        click.echo(json.dumps({"model": model, "auto": auto, "layers": rows, "outputs": outs}, indent=1))
        return
    width = max([len(x.name) for x in found] + [5])
    click.echo(f"{'#':>4}  {'layer':<{width}}  {'op':<20} {'shape':<22} layout")
    for i, x in enumerate(found):
        mark = "  <- auto" if x.name in autos else ""
        shape = "x".join(str(d) for d in x.shape)
        click.echo(f"{i:>4}  {x.name:<{width}}  {x.op:<20} {shape:<22} {x.layout}{mark}")
    click.echo(f"{len(found)} layers; auto = {auto}")
    click.echo("outputs (explain one with --output; --task detect|segment for detectors and segmenters):")
    for o in outs:
        click.echo(f"  {o['name']}: {'x'.join(str(d) for d in o['shape'])}")


def _floats(text: str | None, flag: str = "") -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise click.BadParameter(f"{flag} expected comma-separated numbers, got {text[:40]!r}".lstrip()) from None
    if not all(np.isfinite(values)) or len(values) not in (1, 3):
        raise click.BadParameter(f"{flag} expected 1 or 3 finite numbers, got {text[:40]!r}".lstrip())
    return values


def _labels(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    if not path.is_file():
        raise OnnxcamError(f"label file not found: {path}")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise OnnxcamError(f"label file {path} is not UTF-8 text (byte {e.start}); labels are a text file, "
                           "one class name per line") from None


def _preprocessing_options(f):
    """--mean, --std, --size and --layout: how images become model inputs (explain and evaluate)."""
    options = [
        click.option("--mean", default=None,
                     help="Normalization mean, e.g. 0.485,0.456,0.406 (default: model metadata or ImageNet)."),
        click.option("--std", default=None, help="Normalization std (default: model metadata or ImageNet)."),
        click.option("--size", type=click.IntRange(1, MAX_SIDE), default=None,
                     help="Input side length for models with a dynamic input size."),
        click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), default=None, help="Input layout (default: detected)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _input_size(size: int | None) -> tuple[int, int] | None:
    return (size, size) if size else None


def _preprocessing(m, mean, std, layout) -> Preprocessing:
    return model_preprocessing(m, _floats(mean, "--mean"), _floats(std, "--std"), layout)


@main.command()
@MODEL
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--method", "-m", "methods", multiple=True, default=["gradcam"], show_default=True,
              help=f"Method (repeatable): {', '.join(registry.METHODS)}.")
@click.option("--layer", default="auto", show_default=True, help="Layer tensor or node name (see `onnxcam layers`).")
@click.option("--target", type=click.IntRange(0, None), default=None,
              help="Class index to explain (default: top-1 of each image; with --task detect the detection's class, "
                   "with --task segment the class most pixels take).")
@click.option("--task", type=click.Choice(TASKS), default="classify", show_default=True,
              help="classify: class scores; detect: one detection of a YOLO-style output (raw v5/v8/v11, or NMS rows), "
                   "found by non-maximum suppression; segment: a class's region of a (N, classes, H, W) output.")
@click.option("--output", "output_name", default=None,
              help="The output tensor to explain (default: the first output).")
@click.option("--box", type=click.IntRange(0, None), default=0, show_default=True,
              help="--task detect: which detection to explain, 0 = the highest score (see results.jsonl).")
@click.option("--conf", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="--task detect: the lowest score a detection needs to be listed (ultralytics' default).")
@click.option("--region", default=None, metavar="X0,Y0,X1,Y1",
              help="--task segment: explain the class over this box of the output's pixels (default: where the "
                   "model predicts the class).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="onnxcam-out", show_default=True)
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class names, one per line (default: named by the model's metadata, if any).")
@_preprocessing_options
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=None, help="Rows per ONNX Runtime run (bounds memory).")
@DEVICE
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on Ray Data (extra ray; IMAGES may be folders): alone, a local Ray; 'auto', the running "
                   "cluster; else the cluster at ADDRESS. Rows go to Parquet; see docs/scale.md.")
@method_options(registry.METHODS)
def explain(model, images, methods, layer, target, task, output_name, box, conf, region, out_dir, labels, mean, std, size,
            layout, batch_size, device, ray_address, **kwargs):
    """Heatmaps for IMAGES: an overlay PNG and the raw map (.npy) per image and method, top-5 in results.jsonl.

    Method options (--steps, --sigma, ...) go to the chosen methods that take them. IMAGES may also be .npy files of
    preprocessed samples (one, or a stack N × the input dims): the only input of signal (N, C, L) and volume
    (N, C, D, H, W) models, drawn as a trace with its attribution underneath or as slices.

    Example: onnxcam explain models/efficientnet_lite0.onnx models/samples/cat.jpg -m gradcam -m rsi-gradcam
    """
    methods = list(dict.fromkeys(methods))
    for name in methods:
        registry.get(name)
    method_opts = per_method(methods, given(kwargs))
    if task != "classify" and ray_address is not None:
        raise click.BadParameter("--ray explains classifiers only for now", param_hint="'--task'")
    if task == "classify" and (region is not None or box):
        raise click.BadParameter("--box and --region need --task detect or segment", param_hint="'--task'")
    area = _region(region)
    if ray_address is not None:
        return _ray().explain_command(ray_address, model, images, methods, layer=layer, target=target, out=out_dir,
                                      labels=labels, mean=_floats(mean, "--mean"), std=_floats(std, "--std"), size=size,
                                      layout=layout, device=device, batch_size=batch_size,
                                      method_options={k: v for opts in method_opts.values() for k, v in opts.items()})
    _refuse_folders(images)
    explained = output_name if output_name is not None else (0 if task != "classify" else None)
    ex = Explainer(model, layer=layer, device=device, input_size=_input_size(size), output=explained)
    layer_name = ex.layer.name if any(registry.get(m).needs_layer for m in methods) else None
    if ex.model.rank != 2 and task != "classify":
        raise click.BadParameter(f"--task {task} needs an image model; this one takes {ex.model.layout} input",
                                 param_hint="'--task'")
    prep = model_preprocessing(ex.model, _floats(mean, "--mean"), _floats(std, "--std"), layout, task)
    props = {p.key: p.value for p in ex.model.proto.metadata_props}
    if labels is None:
        labels = outputs.metadata_labels(model, props)
    names = _labels(labels)
    paths = list({os.path.abspath(p): Path(p) for p in reversed(images)}.values())[::-1]  # each image once, in order
    if ex.model.rank != 2 and not all(signals.is_array(p) for p in paths):
        bad = next(p for p in paths if not signals.is_array(p))
        raise OnnxcamError(f"{bad}: this model takes {ex.model.layout} input, not photos; give .npy files of "
                           "preprocessed samples")
    originals, paths = paths, signals.expand(paths, ex.model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stems = outputs.image_stems(paths)
    outputs.refuse_overwriting(out, stems, methods, [*originals, Path(model), *([labels] if labels else [])])
    if outputs.remove_stale_parts(out):
        click.echo("removed temporary files left by an interrupted run", err=True)
    settings = json.loads(json.dumps({  # what the outputs depend on: a re-run with these skips finished images
        "model": os.path.abspath(model), "model_bytes": os.path.getsize(model), "layer": layer_name,
        "methods": methods, "target": target, "options": {m: registry.options(m, method_opts[m]).asdict() for m in methods},
        "task": [task, ex.model.logits, box, conf, area],
        "preprocessing": [prep.size, prep.mean, prep.std, prep.layout] if ex.model.rank == 2 else None,
    }))
    recorded = outputs.recorded_images(outputs.read_records(out), settings)
    todo = [p for p in paths if not outputs.is_complete(out, p, stems[p], methods, recorded)]
    if len(todo) < len(paths):
        click.echo(f"skipping {len(paths) - len(todo)} image(s) already explained in {out}/ with these settings",
                   err=True)
    step = batch_size or DEFAULT_BATCH  # images per explain call: each method's rows of a batch share ORT runs
    with click.progressbar(length=len(todo), label="explaining", file=sys.stderr, hidden=len(todo) < 2) as bar:
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            _explain_batch(ex, chunk, stems, prep, method_opts, (task, target, box, conf, area), batch_size, out, names,
                           settings)
            bar.update(len(chunk))
    click.echo(f"wrote {len(todo)} image(s) x {len(methods)} method(s) to {out}/"
               + (f" ({len(paths) - len(todo)} already there)" if len(todo) < len(paths) else ""))


def _explain_batch(ex, paths: list[Path], stems, prep, method_opts: dict[str, dict], what, batch_size, out: Path, names,
                   settings) -> None:
    """Explain a batch of images with every method, then write each image's files and, last, its record."""
    xs, views = zip(*(_read(ex, prep, path) for path in paths))
    for path, x in zip(paths, xs):
        if not np.isfinite(x).all():
            raise OnnxcamError(f"normalizing {path} with mean {prep.mean} and std {prep.std} gives NaN or infinite "
                               "values; check --mean and --std")
    task, category, box, conf, area = what
    x = np.stack(xs)
    y = ex.outputs_at(x) if task != "classify" else None
    target, extras = tasks.targets(task, y, paths, category, box, area, conf)
    results = {}
    for name, opts in method_opts.items():
        results[name] = ex.explain(x, method=name, target=target, batch_size=batch_size, **opts)
        bad = np.flatnonzero(~results[name].valid)
        if len(bad):
            raise OnnxcamError(no_signal(results[name], int(bad[0]), str(paths[bad[0]])))
    methods = list(method_opts)
    for i, (path, view) in enumerate(zip(paths, views)):
        panels, record = [], {"image": str(path), "layer": settings["layer"]}
        for name, res in results.items():
            prefix = f"{stems[path]}_{outputs.safe_stem(name)}"
            buf = io.BytesIO()
            np.save(buf, (res.cam if res.cam is not None else res.heatmap)[i : i + 1])
            write_atomic(out / f"{prefix}.npy", buf.getvalue())
            panel = overlay(view, res.heatmap[i]) if view is not None else signals.picture(x[i], res.heatmap[i], ex.model)
            if task != "classify":
                panel = tasks.draw(panel, target[i], extras[i])
            write_atomic(out / f"{prefix}.png", png_bytes(panel))
            panels.append(panel)
            record["target"] = int(res.target[i])
        record.update(tasks.record(task, res.logits[i], names, extras[i]))
        if len(methods) > 1:
            sheet = montage([np.uint8(view * 255), *panels], ["image", *methods]) if view is not None else \
                montage(panels, methods, vertical=ex.model.rank == 1)
            write_atomic(out / f"{stems[path]}_montage.png", png_bytes(sheet))
        record["settings"] = settings
        outputs.append_record(out, record)  # last: a record means every file of the image is complete


def _read(ex, prep, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(model input, the RGB view overlays go on): a photo preprocessed, or a .npy sample as it is (no view)."""
    if signals.is_array(path):
        return signals.read_sample(path, ex.model), None
    return prep(read_rgb(path))


def _region(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)) or values[2] <= values[0] or values[3] <= values[1]:
        raise click.BadParameter(f"expected X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0, got {text[:40]!r}",
                                 param_hint="'--region'")
    return values


def _refuse_folders(images) -> None:
    """Folders are for --ray; without it an image argument must be a file (bad usage, exit 2)."""
    for p in images:
        if os.path.isdir(p):
            raise click.BadParameter(f"'{p}' is a directory (folders need --ray)", param_hint="'IMAGES...'")


def _ray():
    """onnxcam.ray, imported only for --ray: without Ray installed, a one-line error that says what to install."""
    try:
        from . import ray as on_ray
    except ImportError as e:
        raise OnnxcamError(f"--ray needs Ray Data, which is not installed ({getattr(e, 'name', None) or e}); "
                           "pip install 'onnxcam[ray]'") from None
    return on_ray


# ---------------------------------------------------------------- export


@main.command("export")
@MODEL
@click.option("--method", "-m", required=True, type=click.Choice(registry.exportable()),
              help="Method to build into the model.")
@click.option("--layer", default="auto", show_default=True, help="Layer tensor or node name (CAM methods).")
@click.option("--task", type=click.Choice(TASKS), default="classify", show_default=True,
              help="What the exported model's inputs choose: classify: int64 `target` (−1 = top-1); detect: `target` "
                   "(class) and `anchor` of a YOLO-style raw output; segment: `target` (class) and a bool `mask`.")
@click.option("--explain-output", "output_name", default=None,
              help="The output tensor to explain (default: the first output).")
@click.option("--runs-on", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="The execution provider the model is meant for: CPU-layout gradient forms, or plain ops for GPUs.")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the explainer model (.onnx).")
@click.option("--triton", "triton_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write a Triton model repository entry DIR/<name>/ (config.pbtxt, 1/model.onnx).")
@click.option("--triton-name", default=None, help="Model name in the Triton repository (default: OUT's stem).")
@click.option("--max-batch-size", type=click.IntRange(1, 65536), default=8, show_default=True,
              help="Triton max_batch_size.")
@method_options(registry.exportable())
def export_command(model, method, layer, task, output_name, runs_on, out, triton_dir, triton_name, max_batch_size,
                   **kwargs):
    """Write a self-contained explainer model: the model's outputs plus `heatmap` (and `cam` or `attribution`).

    The result runs in a stock onnxruntime (or Triton); its optional int64 input `target` (−1 = top-1)
    picks the class per image. Noise methods draw in the graph with RandomNormalLike(--seed).

    Example: onnxcam export models/efficientnet_lite0.onnx -m rsi-gradcam --steps 16 -o explain.onnx --triton repo
    """
    from .export import export
    from .triton import triton_entry

    options = per_method([method], given(kwargs))[method]
    kind = {"classify": "class", "detect": "detection", "segment": "segmentation"}[task]
    explained = output_name if output_name is not None else (0 if task != "classify" else None)
    proto = export(model, method, layer=layer, output=explained, target=kind, runs_on=runs_on, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, proto.SerializeToString())
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): outputs "
               f"{', '.join(o.name for o in proto.graph.output)}")
    if triton_dir is not None:
        entry = triton_entry(proto, triton_dir, triton_name or out.stem, max_batch_size)
        click.echo(f"wrote Triton model {entry}/ (config.pbtxt, 1/model.onnx)")


# ---------------------------------------------------------------- serve


@main.command("serve")
@MODEL
@click.option("--method", "-m", default="gradcam", show_default=True,
              help="Method of :explain and V2 infer when a request names none (its \"method\" parameter).")
@click.option("--layer", default="auto", show_default=True, help="Layer tensor or node name (see `onnxcam layers`).")
@_preprocessing_options
@click.option("--port", "--http_port", "port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="HTTP port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 in a container).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes, each with its own Explainer (requests are threaded inside each).")
@click.option("--name", "--model_name", "name", default=None, help="Model name in the URLs (default: MODEL's file stem).")
@DEVICE
@click.option("--predictor_host", hidden=True, expose_value=False,
              help="Passed by KServe to explainer containers; unused: onnxcam runs the model itself.")
def serve_command(model, method, layer, mean, std, size, layout, port, host, workers, name, device):
    """A KServe model server: V1 :predict (top-k) and :explain (top-k and heatmap), V2 infer (heatmap tensor).

    Example: onnxcam serve models/efficientnet_lite0.onnx --port 8080, then POST
    {"instances": [{"image_bytes": {"b64": "..."}}]} to http://127.0.0.1:8080/v1/models/efficientnet_lite0:explain

    --model_name and --http_port, which KServe appends to an explainer container's arguments, mean --name and --port.
    """
    try:
        from .serve import ExplainerModel, serve
    except ImportError as e:
        raise OnnxcamError(f"onnxcam serve needs kserve, which is not installed ({e.name or e}); "
                           "pip install 'onnxcam[serve]'") from None
    served = ExplainerModel(name or Path(model).stem, model, method=method, layer=layer, device=device,
                            input_size=_input_size(size), mean=_floats(mean, "--mean"), std=_floats(std, "--std"),
                            layout=layout)
    click.echo(f"serving {served.name} ({method}, layer {served.explainer.layer.name}) on http://{host}:{port}", err=True)
    serve(served, port=port, host=host, workers=workers)


# ---------------------------------------------------------------- evaluate


@main.command("evaluate")
@MODEL
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--labels", "labels_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV with the columns file,class_index: the class to explain per image (default: the predicted one).")
@click.option("--method", "-m", "methods", multiple=True, default=["gradcam"], show_default=True,
              help="Method (repeatable); the baselines random and center are always added.")
@click.option("--metric", "metric_texts", multiple=True, default=[",".join(DEFAULT_METRICS)], show_default=True,
              help=f"Metrics, comma-separated or repeated, or 'all': {', '.join(METRICS)}.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("evaluation.json"),
              show_default=True, help="Summary JSON; the curves go to <name>_curves.png beside it.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSONL of per-(image, method) results, appended as they finish and reused on re-runs "
                   "(default: the --json path with .jsonl).")
@click.option("--layer", default="auto", show_default=True, help="Layer tensor or node name (see `onnxcam layers`).")
@_preprocessing_options
@click.option("--deletion-step", type=click.IntRange(1, None), default=None,
              help="Pixels removed or inserted per deletion/insertion step (default: the input width, 224 for 224x224).")
@click.option("--seed", type=click.IntRange(0, None), default=0, show_default=True, help="Seed of max-sensitivity's noise.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=None, help="Rows per ONNX Runtime run (bounds memory).")
@DEVICE
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on Ray Data (extra ray; IMAGES may be folders): alone, a local Ray; 'auto', the running "
                   "cluster; else the cluster at ADDRESS. Per-pair rows go to Parquet in the --log folder "
                   "(default: the --json path with .parquet); see docs/scale.md.")
@method_options(registry.METHODS, skip=("seed",))
def evaluate_command(model, images, labels_csv, methods, metric_texts, json_path, log_path, layer, mean, std, size, layout,
                     deletion_step, seed, batch_size, device, ray_address, **kwargs):
    """Score methods on IMAGES: a method x metric table (mean ± standard error), JSON, and the deletion/insertion curves.

    Resumable: each finished (image, method) goes to the --log JSONL at once, and a re-run with the same
    settings computes only what is missing there.

    Example: onnxcam evaluate models/efficientnet_lite0.onnx img/*.jpg --labels labels.csv -m gradcam -m rsi-gradcam
    """
    from . import evaluate as ev

    methods = ev.check_methods(methods)
    method_opts = per_method(methods, given(kwargs))
    if ray_address is not None:
        return _ray().evaluate_command(ray_address, model, images, methods, labels=labels_csv, metrics=metric_texts,
                                       json_path=json_path, log_path=log_path, layer=layer, mean=_floats(mean, "--mean"),
                                       std=_floats(std, "--std"), size=size, layout=layout, device=device,
                                       deletion_step=deletion_step, seed=seed, batch_size=batch_size,
                                       method_options={k: v for o in method_opts.values() for k, v in o.items()})
    _refuse_folders(images)

    def bar(todo):
        with click.progressbar(todo, label="evaluating", file=sys.stderr, hidden=len(todo) < 2,
                               item_show_func=lambda t: f"{t[0].name} {t[1]}" if t else "") as items:
            yield from items

    report = ev.run(model, images, methods, json_path=json_path, labels_csv=labels_csv,
                    metrics=ev.parse_metrics(metric_texts), log_path=log_path, layer=layer, mean=_floats(mean, "--mean"),
                    std=_floats(std, "--std"), size=size, layout=layout, deletion_step=deletion_step, seed=seed,
                    batch_size=batch_size, device=device, method_options=method_opts, progress=bar,
                    warn=lambda text: click.echo(text, err=True))
    click.echo(ev.table(report, report["metrics"]))
    click.echo(f"{len(report['images'])} image(s) x {len(methods)} method(s); wrote {json_path}"
               + (f" and {report['curves_png']}" if report["curves_png"] else "") + f" (per pair: {report['jsonl']})")
    failures = report["failures"]
    if failures:
        click.echo(f"{len(failures)} (image, method) pair(s) failed and are left out of the means; "
                   f"their errors are under \"failures\" in {json_path}", err=True)
        if len(failures) == len(report["images"]) * len(methods):
            raise OnnxcamError("every (image, method) pair failed; see the warnings above")
