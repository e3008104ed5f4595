"""Fold the crop of a zero Pad's gradient into the convolution that made it.

The gradient of Conv(Pad(x)) is a convolution over the padded frame, then a Slice back to x: ONNX Runtime's CPU
provider reorders the blocked layout to plain NCHW for the Slice and back after it, three passes over the tensor
that the convolution's own pads do for free (TensorFlow-style SAME padding exports as exactly this Pad)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper

UNBOUNDED = 2**31  # a Slice end at least this large keeps everything to the end


def fold_crops(nodes: list[onnx.NodeProto], values: dict[str, np.ndarray], keep: set[str]) -> list[onnx.NodeProto]:
    """`nodes` with each spatial crop of a Conv or ConvTranspose output (through 1×1 identity convolutions) moved
    into that node's pads; `keep`: tensors read outside `nodes`, which keep their shape."""
    producer = {o: n for n in nodes for o in n.output}
    readers = Counter(i for n in nodes for i in n.input)
    dropped = set()
    for crop in (n for n in nodes if n.op_type == "Slice"):
        cut = _spatial_cut(crop, values)
        chain = _conv_chain(crop.input[0], producer, readers, values, keep)
        if cut is None or chain is None or not _move(chain[-1], cut):
            continue
        chain[0].output[0] = crop.output[0]
        dropped.add(id(crop))
    return [n for n in nodes if id(n) not in dropped]


def _spatial_cut(node: onnx.NodeProto, values) -> tuple[list[int], list[int]] | None:
    """(cut at the start, cut at the end) per spatial axis of a Slice with constant bounds, unit steps, nothing cut
    from the batch or channel axes and the end given from the back (negative or unbounded), else None."""

    def arg(i: int) -> np.ndarray | None:
        return values.get(node.input[i]) if i < len(node.input) and node.input[i] else None

    starts, ends, axes, steps = (arg(i) for i in range(1, 5))
    if starts is None or ends is None or axes is None or (steps is not None and (steps != 1).any()):
        return None
    axes = [int(a) for a in axes]
    if min(axes) < 0 or len(set(axes)) != len(axes):
        return None
    rank = max(axes) + 1
    begin, end = [0] * rank, [0] * rank
    for a, s, e in zip(axes, starts, ends):
        if s < 0 or (0 <= e < UNBOUNDED):
            return None
        begin[a], end[a] = int(s), 0 if e >= UNBOUNDED else int(-e)
    if any(begin[:2]) or any(end[:2]):
        return None
    return begin[2:], end[2:]


def _conv_chain(name: str, producer, readers, values, keep) -> list[onnx.NodeProto] | None:
    """The nodes from `name` back to the convolution whose pads can crop it: identity 1×1 convolutions (the
    blocked-layout hand-over), then a Conv or ConvTranspose; each output read only by the next."""
    chain = []
    while name in producer and readers[name] == 1 and name not in keep:
        node = producer[name]
        chain.append(node)
        if node.op_type == "ConvTranspose" or (node.op_type == "Conv" and not _is_identity(node, values)):
            return chain
        if node.op_type != "Conv":
            return None
        name = node.input[0]
    return None


def _is_identity(node: onnx.NodeProto, values) -> bool:
    """A depthwise 1×1 Conv with all-one weights, no bias, pads or strides (it only changes the layout)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    w = values.get(node.input[1])
    return (len(node.input) == 2 and w is not None and w.shape[2:] == (1,) * (w.ndim - 2) and w.shape[1] == 1
            and attrs.get("group") == w.shape[0] and bool((w == 1).all())
            and not any(attrs.get("pads", [])) and all(s == 1 for s in attrs.get("strides", [1])))


def _move(node: onnx.NodeProto, cut: tuple[list[int], list[int]]) -> bool:
    """Crop `node`'s output by its pads: a ConvTranspose pads more, a Conv less (as long as its pads last)."""
    begin, end = cut
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    k = len(attrs.get("kernel_shape", []))
    if attrs.get("auto_pad", "NOTSET") != "NOTSET" or "output_shape" in attrs or not k:
        return False
    if len(begin) > k:
        return False
    begin, end = begin + [0] * (k - len(begin)), end + [0] * (k - len(end))
    pads = list(attrs.get("pads", [0] * 2 * k))
    if node.op_type == "ConvTranspose":
        pads = [p + c for p, c in zip(pads, begin + end)]
    else:
        strides = list(attrs.get("strides", [1] * k))
        pads = [p - c * s for p, c, s in zip(pads, begin + end, strides + strides)]
        if min(pads) < 0:
            return False
    for a in node.attribute:
        if a.name == "pads":
            node.attribute.remove(a)
            break
    node.attribute.append(helper.make_attribute("pads", pads))
    return True
