"""Which tensors can be explained (spatial feature maps and token grids) and which one "auto" means."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from onnx import TensorProto

from .errors import LayerError
from .model import LAYOUTS, Model, channel_axis

# Ops that only rearrange or normalize per position: "auto" looks through them back to the real feature map.
_PASS_THROUGH = {"LayerNormalization", "Transpose", "Reshape"}


@dataclass(frozen=True)
class Layer:
    """A candidate layer: `layout` tells how to read it as a grid (the input's layouts — NCHW, NHWC, NCL, NLC,
    NCDHW, NDHWC — or tokens NTD)."""

    name: str
    op: str
    node: str
    shape: tuple
    layout: str

    @property
    def grid(self) -> tuple[int, ...]:
        """The spatial size of the layer seen as a map, (h, w) for images; tokens drop a class token when T − 1 is
        square."""
        if self.layout == "NTD":
            side = _square_side(self.shape[1]) or _square_side(self.shape[1] - 1)
            return side, side
        return tuple(self.shape[2:] if self.channels_first else self.shape[1:-1])

    @property
    def channels_first(self) -> bool:
        return self.layout != "NTD" and channel_axis(self.layout) == 1

    @property
    def rank(self) -> int:
        return len(self.grid)

    @property
    def class_tokens(self) -> int:
        return 0 if self.layout != "NTD" or _square_side(self.shape[1]) else 1


def _square_side(t: int) -> int | None:
    side = math.isqrt(t) if t > 0 else 0
    return side if side > 1 and side * side == t else None


def _dims(vi) -> tuple | None:
    tt = vi.type.tensor_type
    if tt.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE) or not tt.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim)


def _layout(shape: tuple, model: Model) -> str | None:
    """The input's layouts (NCHW/NHWC for images) or NTD when the tensor is a spatial map with more than one
    position, else None."""
    if model.rank != 2:
        first, last = LAYOUTS[model.rank + 2]
        if len(shape) != model.rank + 2 or not all(isinstance(d, int) for d in shape[1:]):
            return None
        layout = first if channel_axis(model.layout) == 1 else last
        spatial = shape[2:] if layout == first else shape[1:-1]
        return layout if math.prod(spatial) > 1 else None
    image_hw = model.image_size
    if len(shape) == 3 and all(isinstance(d, int) for d in shape[1:]):
        t = shape[1]
        return "NTD" if (_square_side(t) or _square_side(t - 1)) and shape[2] > 1 else None
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        return None
    c, h, w = shape[1:]
    nchw_ok, nhwc_ok = h > 1 and w > 1, c > 1 and h > 1
    if nchw_ok and nhwc_ok and all(image_hw):
        # pick the reading whose grid has the image's aspect ratio (Swin keeps maps channels-last)
        ih, iw = image_hw
        if abs(h * iw - w * ih) > abs(c * iw - h * ih):
            return "NHWC"
    return "NCHW" if nchw_ok else None


def candidate_layers(model: Model) -> list[Layer]:
    """Spatial tensors in input → output order, with the op that produces each."""
    if None in model.image_size:
        raise LayerError(f"{model.source}: the input's spatial size is dynamic, so layer shapes are unknown; "
                         "give it: Explainer(model, input_size=(H, W)) or --size on the command line")
    shapes = {vi.name: _dims(vi) for vi in [*model.proto.graph.value_info, *model.proto.graph.output]}
    layers = []
    for node in model.proto.graph.node:
        for out in node.output:
            shape = shapes.get(out)
            layout = _layout(shape, model) if shape else None
            if layout:
                layers.append(Layer(out, node.op_type, node.name, shape, layout))
    return layers


def auto_layer(model: Model) -> Layer:
    """The last spatial map on the way to the score, looked through per-position ops (final norms)."""
    layers = candidate_layers(model)
    ancestors = _ancestors(model, model.logits)
    usable = [layer for layer in layers if layer.name in ancestors]
    if not usable:
        raise LayerError(f"{model.source}: no spatial layer (N,C,h,w, N,C,l, N,C,d,h,w or a token grid) leads to the "
                         "score output")
    by_name = {layer.name: layer for layer in usable}
    producers = {o: n for n in model.proto.graph.node for o in n.output}
    layer = usable[-1]
    while layer.op in _PASS_THROUGH and producers[layer.name].input[0] in by_name:
        layer = by_name[producers[layer.name].input[0]]
    if layer.class_tokens:
        return _last_attention_input(usable) or layer
    return layer


def head_inputs(model: Model) -> list[Layer]:
    """For an output that is not class scores (a detector's, a segmenter's): the layers feeding its heads, i.e. the
    inputs of the last Conv on every path to the output — spatial maps no larger than the image (a YOLO's DFL conv
    works on anchors, not on a map)."""
    by_name = {layer.name: layer for layer in candidate_layers(model)}
    producers = {o: n for n in model.proto.graph.node for o in n.output}
    found, seen, todo = [], set(), [model.logits]
    while todo:
        tensor = todo.pop()
        node = producers.get(tensor)
        if tensor in seen or node is None or node.op_type in ("Shape", "Size"):  # sizes carry no gradient
            continue
        seen.add(tensor)
        layer = by_name.get(node.input[0]) if node.op_type == "Conv" else None
        if layer is not None and layer.channels_first and all(g <= i for g, i in zip(layer.grid, model.image_size)):
            if layer not in found:
                found.append(layer)
            continue
        todo.extend(i for i in node.input if i)
    if not found:
        raise LayerError(f"{model.source}: no convolution head found before output {model.logits!r}; name the layers "
                         "to explain (layer=[...], --layer)")
    order = {layer.name: k for k, layer in enumerate(by_name.values())}
    return sorted(found, key=lambda layer: order[layer.name])


def _last_attention_input(usable: list[Layer]) -> Layer | None:
    """With a class token (ViT), only attention mixes the patch tokens into the score: after the last
    block's attention every patch gradient is zero. So take the last block's first norm (pytorch-grad-cam's
    `blocks[-1].norm1`): the third-last token LayerNormalization (ln_1, ln_2, final norm)."""
    norms = [x for x in usable if x.op == "LayerNormalization" and x.layout == "NTD"]
    return norms[-3] if len(norms) >= 3 else None


def _ancestors(model: Model, tensor: str) -> set[str]:
    wanted = {tensor}
    for node in reversed(model.proto.graph.node):
        if any(o in wanted for o in node.output):
            wanted.update(node.input)
    return wanted


def resolve_layer(model: Model, name: str = "auto") -> Layer:
    """A layer by tensor name or node name; unknown names get did-you-mean suggestions."""
    if name == "auto":
        return auto_layer(model)
    layers = candidate_layers(model)
    for layer in layers:
        if name in (layer.name, layer.node):
            return layer
    tensors = {o for n in model.proto.graph.node for o in n.output}
    if name in tensors:
        raise LayerError(f"tensor {name!r} is not a spatial layer; run `onnxcam layers MODEL` to list the layers")
    close = difflib.get_close_matches(name, [x for layer in layers for x in (layer.name, layer.node)], n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "run `onnxcam layers MODEL` to list them"
    raise LayerError(f"unknown layer {name!r}; {hint}")
