"""The `onnxcam` command: one-line errors, exit 1 for a failed run and 2 for bad usage."""

from __future__ import annotations

import inspect
import io
import json
import sys
from pathlib import Path

import click
import numpy as np
import onnx

from . import __version__
from .engine import Explainer
from .errors import OnnxcamError
from .image import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, montage, overlay, png_bytes, read_rgb, write_atomic
from .layers import auto_layer, candidate_layers
from .model import load_model
from .runtime import DEVICES, working_providers


class Group(click.Group):
    """Turns every error into one line on stderr (never a traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OnnxcamError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
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


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxcam")
def main():
    """Explain ONNX image models with gradient heatmaps, using ONNX Runtime only.

    Example: onnxcam layers models/efficientnet_lite0.onnx
    """


@main.command()
@MODEL
def info(model):
    """Inputs, outputs, opset, IR version and the execution providers that work here.

    Example: onnxcam info models/efficientnet_lite0.onnx
    """
    raw = onnx.load(model, load_external_data=False) if _is_file(model) else None
    m = load_model(model)
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


def _is_file(path: str) -> bool:
    return Path(path).is_file()


@main.command()
@MODEL
@click.option("--json", "as_json", is_flag=True, help="Print the layers as JSON.")
def layers(model, as_json):
    """Candidate layers (spatial feature maps), input → output; "auto" marks the default choice.

    Example: onnxcam layers models/efficientnet_lite0.onnx --json
    """
    m = load_model(model)
    found = candidate_layers(m)
    auto = auto_layer(m).name if found else None
    if as_json:
        rows = [{"name": x.name, "op": x.op, "shape": list(x.shape), "layout": x.layout, "auto": x.name == auto}
                for x in found]
        click.echo(json.dumps({"model": model, "auto": auto, "layers": rows}, indent=1))
        return
    width = max([len(x.name) for x in found] + [5])
    click.echo(f"{'#':>4}  {'layer':<{width}}  {'op':<20} {'shape':<22} layout")
    for i, x in enumerate(found):
        mark = "  <- auto" if x.name == auto else ""
        shape = "x".join(str(d) for d in x.shape)
        click.echo(f"{i:>4}  {x.name:<{width}}  {x.op:<20} {shape:<22} {x.layout}{mark}")
    click.echo(f"{len(found)} layers; auto = {auto}")


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None
    if not all(np.isfinite(values)) or len(values) not in (1, 3):
        raise click.BadParameter(f"expected 1 or 3 finite numbers, got {text!r}")
    return values


def _labels(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    if not path.is_file():
        raise OnnxcamError(f"label file not found: {path}")
    return path.read_text(encoding="utf-8").splitlines()


def _preprocessing(m, mean, std, size, layout) -> Preprocessing:
    props = {p.key: p.value for p in m.proto.metadata_props}
    h, w = m.image_size
    if size:
        h = w = size
    if not h or not w:
        raise OnnxcamError("the model's input size is dynamic; give it with --size")
    if size and m.image_size[0] and (h, w) != m.image_size:
        raise OnnxcamError(f"--size {size} does not match the model's input size {m.image_size}")
    mean = _floats(mean) or _floats(props.get("onnxcam.mean")) or IMAGENET_MEAN
    std = _floats(std) or _floats(props.get("onnxcam.std")) or IMAGENET_STD
    if any(s <= 0 for s in std):
        raise OnnxcamError(f"--std must be positive; got {std}")
    return Preprocessing((h, w), mean, std, layout or m.layout)


@main.command()
@MODEL
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--method", "-m", "methods", multiple=True, default=["gradcam"], show_default=True,
              help="Method (repeatable): gradcam, gradcam++, xgradcam, layercam, hirescam, integrated-gradcam, "
                   "rsi-gradcam, smooth-gradcam++.")
@click.option("--layer", default="auto", show_default=True, help="Layer tensor or node name (see `onnxcam layers`).")
@click.option("--target", type=int, default=None, help="Class index to explain (default: top-1 of each image).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="onnxcam-out", show_default=True)
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class names, one per line (default: named by the model's metadata, if any).")
@click.option("--mean", default=None, help="Normalization mean, e.g. 0.485,0.456,0.406 (default: model metadata or ImageNet).")
@click.option("--std", default=None, help="Normalization std (default: model metadata or ImageNet).")
@click.option("--size", type=int, default=None, help="Input side length for models with a dynamic input size.")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), default=None, help="Input layout (default: detected).")
@click.option("--steps", type=int, default=None, help="Steps of path methods (default: the method's).")
@click.option("--batch-size", type=int, default=None, help="Rows per ONNX Runtime run (bounds memory).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
def explain(model, images, methods, layer, target, out_dir, labels, mean, std, size, layout, steps, batch_size, device):
    """Heatmaps for IMAGES: an overlay PNG and the raw map (.npy) per image and method, top-5 in results.jsonl.

    Example: onnxcam explain models/efficientnet_lite0.onnx models/samples/cat.jpg -m gradcam -m rsi-gradcam
    """
    ex = Explainer(model, layer=layer, device=device)
    prep = _preprocessing(ex.model, mean, std, size, layout)
    props = {p.key: p.value for p in ex.model.proto.metadata_props}
    if labels is None and "onnxcam.labels" in props:
        candidate = Path(model).resolve().parent / Path(props["onnxcam.labels"]).name
        labels = candidate if candidate.is_file() else None
    names = _labels(labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in {"steps": steps, "batch_size": batch_size}.items() if v is not None}
    with click.progressbar(images, label="explaining", file=sys.stderr, hidden=len(images) < 2) as bar:
        for path in bar:
            _explain_one(ex, Path(path), prep, methods, target, options, out, names)
    click.echo(f"wrote {len(images)} image(s) x {len(methods)} method(s) to {out}/")


def _explain_one(ex, path: Path, prep, methods, target, options, out: Path, names) -> None:
    x, view = prep(read_rgb(path))
    panels, record = [], {"image": str(path), "layer": ex.layer.name}
    for name in methods:
        opts = {k: v for k, v in options.items() if k != "steps" or "steps" in _method_options(name)}
        res = ex.explain(x[None], method=name, target=target, **opts)
        stem = f"{path.stem}_{name}"
        buf = io.BytesIO()
        np.save(buf, res.cam if res.cam is not None else res.heatmap)
        write_atomic(out / f"{stem}.npy", buf.getvalue())
        panel = overlay(view, res.heatmap[0])
        write_atomic(out / f"{stem}.png", png_bytes(panel))
        panels.append(panel)
        record["target"] = int(res.target[0])
    logits = res.logits[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs)[:5]
    record["top5"] = [{"class": int(c), "prob": round(float(probs[c]), 5),
                       **({"name": names[c]} if names and c < len(names) else {})} for c in top]
    if len(methods) > 1:
        write_atomic(out / f"{path.stem}_montage.png", png_bytes(montage([np.uint8(view * 255), *panels],
                                                                          ["image", *methods])))
    with open(out / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _method_options(name: str) -> list[str]:
    from .methods import METHODS

    f = METHODS.get(name)
    return list(inspect.signature(f).parameters) if f else []
