"""The `onnxcam` command: one-line errors, exit 1 for a failed run and 2 for bad usage."""

from __future__ import annotations

import json
import sys

import click
import onnx

from . import __version__
from .errors import OnnxcamError
from .layers import auto_layer, candidate_layers
from .model import load_model
from .runtime import working_providers


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
    from pathlib import Path

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
