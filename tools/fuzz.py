"""Fuzz the `onnxcam` CLI with broken and hostile model files; report crashes, tracebacks and hangs.

Each case takes a real model — a small CNN written here with onnx.helper; the real exporter fixtures in
tests/fixtures/wild (tf2onnx Keras, paddle2onnx, model-zoo opset 9/11, timm MobileViT, transformers ViT,
ultralytics YOLO, fp16/QDQ/onnxslim/external-data/static-batch/(N,C,1,1) variants; see its manifest.json);
or, for a few cases, the demo EfficientNet-Lite0 — and applies 1–3 seeded mutations: flipped bytes,
truncation, dropped or duplicated nodes, cycles, dangling names, wrong dtypes, huge or negative dims, bad
attributes, NaN weights, hostile external data, bad opsets and metadata, broken images and options, and
hostile names: tensor, node, graph and dim names and metadata_props with quotes, braces, newlines, NUL,
10k characters, invalid UTF-8, paths (`../../etc/passwd`, `/abs`, `a/b`, `.`), onnxcam's own internal tensor
names (`target`, `grad_seed`, `onnxcam_logits`, `<tensor>_grad`...) and the metadata keys onnxcam reads
(`onnxcam.mean`, `onnxcam.std`, `onnxcam.labels`, with a hostile label file beside the model). It runs
`python -m onnxcam layers`, `explain`, `export -m gradcam --triton DIR` (now and then another method) and, on
half the cases whose model loads and is small, `check`, in subprocesses with a timeout and a memory limit. A run
is a finding when it

- crashes: a negative return code (killed by a signal: segfault, abort),
- shows a traceback: the word Traceback in its output, or an exit code other than 0, 1 or 2,
- hangs: it runs past the timeout,
- hits onnxcam's catch-all ("internal error ... please report"): a bug hidden behind a one-line message,
- leaves a partial file (*.part) in an output folder,
- (`layers --json`, every other case) exits 0 with something else than JSON on stdout,
- (export) exits 0 but its Triton entry is wrong: config.pbtxt does not parse as Triton's ModelConfig, its
  inputs or outputs (names, data types, dims) differ from those of the model it sits beside, or ONNX Runtime
  cannot load that model.

Refusals (exit 1 or 2 with one `error:` line) are the expected outcome of most cases. Cases are
reproducible: case i of seed s is the same model, image and options on every machine.

    python tools/fuzz.py                       # 1000 cases, 2 workers
    python tools/fuzz.py --cases 50 --case-start 300 --keep /tmp/fuzz-findings
    python tools/fuzz.py --only 417 -v         # re-run one case and print what each command said
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "efficientnet_lite0.onnx"
CAT = ROOT / "models" / "samples" / "cat.jpg"
WILD = ROOT / "tests" / "fixtures" / "wild"
FINDINGS = ("crash", "traceback", "hang", "internal", "partial", "triton", "stdout")
CHECK_MAX_BYTES = 400_000  # `onnxcam check` (every method plus finite differences) only on models this small
OPS = ["Relu", "Conv", "Add", "Mul", "Gemm", "MaxPool", "Flatten", "Reshape", "Softmax", "Identity", "Concat",
       "GlobalAveragePool", "BatchNormalization", "Transpose", "Loop", "If", "Resize", "Sigmoid", "Split", "Cast"]
DTYPES = [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT8,
          TensorProto.UINT8, TensorProto.BOOL, TensorProto.STRING, TensorProto.COMPLEX64, TensorProto.BFLOAT16,
          TensorProto.FLOAT8E4M3FN, TensorProto.UNDEFINED, 999]
HUGE = [2**31, 2**31 + 1, 2**40, 2**62, 2**63 - 1, 10**6, 0, -1, -(2**40)]


# ---------------------------------------------------------------- the small real CNN


def small_cnn(seed: int = 0) -> onnx.ModelProto:
    """A real 32×32 CNN (conv/BN/ReLU/max-pool, a residual add, GAP, Gemm, Softmax) with seeded weights."""
    rng = np.random.default_rng(seed)

    def w(name, *shape, scale=None):
        fan_in = int(np.prod(shape[1:])) or 1
        return numpy_helper.from_array((rng.standard_normal(shape) * (scale or (2 / fan_in) ** 0.5)).astype(np.float32),
                                       name)

    inits = [w("c1.w", 8, 3, 3, 3), w("c1.b", 8, scale=0.1), w("bn.scale", 8, scale=0.1), w("bn.bias", 8, scale=0.1),
             w("bn.mean", 8, scale=0.1), numpy_helper.from_array(np.ones(8, np.float32), "bn.var"),
             w("c2.w", 16, 8, 3, 3), w("c2.b", 16, scale=0.1), w("c3.w", 16, 16, 3, 3), w("c3.b", 16, scale=0.1),
             w("fc.w", 10, 16), w("fc.b", 10, scale=0.1)]
    nodes = [
        helper.make_node("Conv", ["input", "c1.w", "c1.b"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"], name="bn1",
                         epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2.w", "c2.b"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "c3.w", "c3.b"], ["c3"], name="conv3", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c3", "r2"], ["a3"], name="add3"),
        helper.make_node("Relu", ["a3"], ["features"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["features"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])
    model = helper.make_model(helper.make_graph(nodes, "small_cnn", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxcam-fuzz")
    model.ir_version = 8
    helper.set_model_props(model, {"onnxcam.mean": "0.5,0.5,0.5", "onnxcam.std": "0.25,0.25,0.25"})
    return onnx.shape_inference.infer_shapes(model)


# ---------------------------------------------------------------- mutations of the model proto


def _node(p, r):
    return r.choice(p.graph.node) if p.graph.node else None


def drop_node(p, r):
    if p.graph.node:
        del p.graph.node[r.randrange(len(p.graph.node))]


def duplicate_node(p, r):
    if p.graph.node:
        i = r.randrange(len(p.graph.node))
        p.graph.node.insert(r.randrange(len(p.graph.node) + 1), copy.deepcopy(p.graph.node[i]))


def swap_nodes(p, r):
    if len(p.graph.node) > 1:
        i, j = r.sample(range(len(p.graph.node)), 2)
        a, b = copy.deepcopy(p.graph.node[i]), copy.deepcopy(p.graph.node[j])
        p.graph.node[i].CopyFrom(b)
        p.graph.node[j].CopyFrom(a)


def cycle(p, r):
    """An early node reads a later node's output (or its own): a loop in the graph."""
    nodes = [n for n in p.graph.node if n.input]
    if len(nodes) < 2:
        return
    i, j = sorted(r.sample(range(len(nodes)), 2))
    nodes[i].input[r.randrange(len(nodes[i].input))] = r.choice([nodes[j], nodes[i]]).output[0]
    if r.random() < 0.5:  # also make it topologically "sorted" by moving the reader last
        moved = copy.deepcopy(nodes[i])
        p.graph.node.remove(nodes[i])
        p.graph.node.append(moved)


def dangling(p, r):
    """A name nobody produces: a node input, a node output, a graph output or a graph input."""
    what = r.choice(["node_input", "node_output", "graph_output", "graph_input", "empty_input"])
    n = _node(p, r)
    if what == "node_input" and n is not None and n.input:
        n.input[r.randrange(len(n.input))] = f"ghost_{r.randrange(100)}"
    elif what == "empty_input" and n is not None and n.input:
        n.input[0] = ""
    elif what == "node_output" and n is not None:
        n.output[0] = f"ghost_{r.randrange(100)}"
    elif what == "graph_output" and p.graph.output:
        p.graph.output[0].name = r.choice(["ghost", "", "input", "c1.w"])
    elif p.graph.input:
        p.graph.input[0].name = r.choice(["ghost", "", "c1.w", "probs"])


def _value_infos(p):
    return [*p.graph.input, *p.graph.output, *p.graph.value_info]


def wrong_dtype(p, r):
    if r.random() < 0.6:
        vi = r.choice(_value_infos(p))
        vi.type.tensor_type.elem_type = r.choice(DTYPES)
    elif p.graph.initializer:
        r.choice(p.graph.initializer).data_type = r.choice(DTYPES)


def huge_dim(p, r):
    """Absurd dims on graph inputs, outputs or value_info (a 2^40-element input)."""
    vi = r.choice(_value_infos(p))
    dims = vi.type.tensor_type.shape.dim
    if not dims:
        return
    for _ in range(r.randint(1, len(dims))):
        dims[r.randrange(len(dims))].dim_value = r.choice(HUGE)
    if r.random() < 0.2:
        dims.add().dim_value = r.choice(HUGE)


def initializer_dims(p, r):
    """Declared dims that do not match the stored data."""
    if not p.graph.initializer:
        return
    t = r.choice(p.graph.initializer)
    choice = r.randrange(4)
    if choice == 0 and t.dims:
        t.dims[r.randrange(len(t.dims))] = r.choice(HUGE + [2, 3, 1000])
    elif choice == 1:
        t.dims.append(r.choice([1, 2, 2**40]))
    elif choice == 2 and t.dims:
        del t.dims[-1]
    else:
        del t.dims[:]
        t.dims.extend([2**20, 2**20, 2**20, 2**20][: r.randint(1, 4)])


def initializer_data(p, r):
    """Stored data shorter/longer than declared, NaN/Inf weights, or values moved to typed fields."""
    if not p.graph.initializer:
        return
    t = r.choice(p.graph.initializer)
    choice = r.randrange(5)
    if choice == 0:
        t.raw_data = t.raw_data[: r.randrange(len(t.raw_data) + 1)]
    elif choice == 1:
        t.raw_data = t.raw_data + bytes(r.randrange(1, 64))
    elif choice == 2 and t.data_type == TensorProto.FLOAT:
        a = numpy_helper.to_array(t).copy()
        a.flat[r.randrange(a.size) if a.size else 0:] = r.choice([np.nan, np.inf, -np.inf, 1e38])
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    elif choice == 3:
        t.ClearField("raw_data")
        t.float_data.extend([1.0] * r.randrange(3))
    else:
        t.raw_data = r.randbytes(len(t.raw_data))  # garbage bytes, same length


def _random_attr_value(r, name):
    kind = r.randrange(7)
    if kind == 0:
        return helper.make_attribute(name, [r.choice(HUGE + [0, 1, 3]) for _ in range(r.randint(0, 5))])
    if kind == 1:
        return helper.make_attribute(name, r.choice(HUGE + [0, 1, 2, 3, -2]))
    if kind == 2:
        return helper.make_attribute(name, r.choice([float("nan"), float("inf"), -1.0, 0.0, 1e30]))
    if kind == 3:
        return helper.make_attribute(name, r.choice(["", "NOTSET", "SAME_UPPER", "x" * 1000]))
    if kind == 4:
        return helper.make_attribute(name, [0.5, float("nan")])
    if kind == 5:
        return helper.make_attribute(name, numpy_helper.from_array(np.zeros(r.choice([0, 3]), np.float32)))
    return helper.make_attribute(name, [b"a", b"b"])


def bad_attribute(p, r):
    """Change, retype, delete or add node attributes (huge kernels, negative pads, NaN epsilons...)."""
    n = _node(p, r)
    if n is None:
        return
    choice = r.randrange(3)
    if choice == 0 and n.attribute:
        i = r.randrange(len(n.attribute))
        new = _random_attr_value(r, n.attribute[i].name)
        n.attribute[i].CopyFrom(new)
    elif choice == 1 and n.attribute:
        del n.attribute[r.randrange(len(n.attribute))]
    else:
        name = r.choice(["kernel_shape", "pads", "strides", "dilations", "group", "axis", "epsilon", "auto_pad",
                         "transB", "alpha", "perm", "mode", "bogus"])
        for a in list(n.attribute):
            if a.name == name:
                n.attribute.remove(a)
        n.attribute.append(_random_attr_value(r, name))


def change_op(p, r):
    n = _node(p, r)
    if n is not None:
        n.op_type = r.choice(OPS + ["Foo", "", "conv"])
        if r.random() < 0.2:
            n.domain = r.choice(["com.microsoft", "ai.onnx.ml", "evil"])


def bad_opset(p, r):
    choice = r.randrange(4)
    if choice == 0:
        p.opset_import[0].version = r.choice([1, 6, 9, 13, 16, 23, 99, 10**6, -1])
    elif choice == 1:
        p.opset_import.add(domain=r.choice(["com.microsoft", "evil.domain", "ai.onnx.ml"]), version=1)
    elif choice == 2:
        del p.opset_import[:]
    else:
        p.ir_version = r.choice([0, 1, 3, 11, 12, 99, 2**40])


def bad_metadata(p, r):
    key = r.choice(["onnxcam.mean", "onnxcam.std", "onnxcam.labels"])
    value = r.choice(["nan,nan,nan", "0,0,0", "-1", "1,2", "", "abc", "1e999,1,1", "../../../etc/passwd", "/etc/shadow",
                      "\x00", "x" * 10000])
    for prop in list(p.metadata_props):
        if prop.key == key:
            p.metadata_props.remove(prop)
    p.metadata_props.add(key=key, value=value)


def external_data(p, r):
    """An initializer that points at data outside the folder, at a missing file, or past a file's end."""
    if not p.graph.initializer:
        return
    t = r.choice(p.graph.initializer)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    location = r.choice(["../../../../etc/passwd", "/etc/passwd", "missing.bin", "model.onnx", "", "."])
    t.external_data.add(key="location", value=location)
    if r.random() < 0.5:
        t.external_data.add(key="offset", value=str(r.choice([0, 10**12, -5])))
        t.external_data.add(key="length", value=str(r.choice([4, 10**12, -1])))


def drop_field(p, r):
    """Remove a graph input, output, initializer or all value_info, or make an input optional-looking."""
    choice = r.randrange(5)
    g = p.graph
    if choice == 0 and g.input:
        del g.input[r.randrange(len(g.input))]
    elif choice == 1 and g.output:
        del g.output[r.randrange(len(g.output))]
    elif choice == 2 and g.initializer:
        del g.initializer[r.randrange(len(g.initializer))]
    elif choice == 3 and g.input:
        g.input[0].type.tensor_type.ClearField("shape")
    else:
        extra = copy.deepcopy(g.output[0]) if g.output else helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])
        g.output.append(extra)  # the same output listed twice


def rename_io(p, r):
    """Input or output names with odd characters (the output file names must not escape --out)."""
    name = r.choice(["../../escape", "/abs/path", "a b", "\u00e9\u4e2d", "x" * 5000, "in\nput"])
    if r.random() < 0.5 and p.graph.input:
        old = p.graph.input[0].name
        p.graph.input[0].name = name
    else:
        old = p.graph.output[0].name if p.graph.output else ""
        if p.graph.output:
            p.graph.output[0].name = name
    for n in p.graph.node:
        for i, v in enumerate(n.input):
            if v == old:
                n.input[i] = name
        for i, v in enumerate(n.output):
            if v == old:
                n.output[i] = name


def insert_op(p, r):
    """A valid-looking op spliced into the graph that blows sizes up or breaks them at run time."""
    g = p.graph
    spots = [k for k, n in enumerate(g.node) if n.output and n.op_type not in ("Softmax",)]
    if not spots:
        return
    k = r.choice(spots)
    src = g.node[k].output[0]
    new = f"fuzz_{r.randrange(10**6)}"

    def const(values):
        name = f"{new}_c{len(g.initializer)}"
        g.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64 if isinstance(values[0], int) else
                                                                np.float32), name))
        return name

    kind = r.choice(["expand", "tile", "resize", "reshape", "constant_of_shape", "pad", "slice", "div0", "cast"])
    huge = r.choice([2**16, 2**20, 2**31, 2**40])
    if kind == "expand":
        node = helper.make_node("Expand", [src, const([1, 1, huge, 1])], [new])
    elif kind == "tile":
        node = helper.make_node("Tile", [src, const([1, 1, huge, huge])], [new])
    elif kind == "resize":
        node = helper.make_node("Resize", [src, "", const([1.0, 1.0, float(huge), float(huge)])], [new])
    elif kind == "reshape":
        node = helper.make_node("Reshape", [src, const(r.choice([[0, -1, 7, 3], [-1, -1], [huge, -1], [0, 0, 0, 0, 0]]))],
                                [new])
    elif kind == "constant_of_shape":
        node = helper.make_node("ConstantOfShape", [const([huge, huge])], [new + "_big"])
        g.node.insert(k + 1, node)
        node = helper.make_node("Add", [src, new + "_big"], [new])
        k += 1
    elif kind == "pad":
        node = helper.make_node("Pad", [src, const([0, 0, huge, huge, 0, 0, -huge, 1])], [new])
    elif kind == "slice":
        node = helper.make_node("Slice", [src, const([huge]), const([-huge]), const([r.choice([0, 1, 2, 3, 7])])], [new])
    elif kind == "div0":
        node = helper.make_node("Div", [src, new + "_zero"], [new])
        g.initializer.append(numpy_helper.from_array(np.zeros(1, np.float32), new + "_zero"))
    else:
        node = helper.make_node("Cast", [src], [new], to=r.choice([TensorProto.INT8, TensorProto.BOOL, TensorProto.FLOAT16]))
    g.node.insert(k + 1, node)
    for consumer in list(g.node)[k + 2 :]:  # later readers of src now read the new tensor
        for i, v in enumerate(consumer.input):
            if v == src:
                consumer.input[i] = new
    for out in g.output:
        if out.name == src:
            out.name = new
    del g.value_info[:]


# ---------------------------------------------------------------- hostile names and metadata

# a protobuf string field may carry invalid UTF-8 when the bytes are written directly: mutations put this ASCII
# token into names, and make_case swaps it for as many invalid bytes in the serialized model
BAD_UTF8_TOKEN = b"onnxcamFUZZbadUTF8"
BAD_UTF8_BYTES = b"\xff\xfe\xc3(\xed\xa0\x80\xc0\xaf\xf8\x88\x80\x80\x80bad\x80"
assert len(BAD_UTF8_TOKEN) == len(BAD_UTF8_BYTES)
HOSTILE_TEXT = ['"', 'a"b', "'", "{", "}", "{}", 'in"put} {\nname: "x', 'probs"}\noutput [ { name: "evil', "a\nb",
                "\r\n", "\n", "x" * 10_000, "../../etc/passwd", "/abs", "/etc/passwd", "a/b", ".", "..", "./", "",
                " ", "a\x00b", "\x00", "\u00e9\u4e2d", "\u202eevil", "\\", "\\n", "%s%n%x", "${HOME}", "$(touch pwned)",
                "--help", "-m", "CON", "\t", "\ufeff", "\x1b[31mred", "\ud7ff\ue000", "auto", "#", "a b",
                BAD_UTF8_TOKEN.decode(), "in" + BAD_UTF8_TOKEN.decode()]
INTERNAL_NAMES = ["target", "grad_seed", "onnxcam_logits", "onnxcam_prob", "onnxcam_rows", "heatmap", "cam",
                  "attribution", "onnxcam_zero", "onnxcam_off_on", "onnxcam_batch", "onnxcam_target_n", "onnxcam_top1",
                  "onnxcam_wants_top1", "onnxcam_class", "onnxcam_classes", "onnxcam_check_perturbation",
                  "onnxcam_grad/Mul_1", "onnxcam_grad/const_2", "onnxcam_grad/Sum_5", "onnxcam_export/const_1",
                  "onnxcam_export/Unsqueeze_1", "input_grad", "logits_grad", "probs_grad", "features_grad"]
METADATA_KEYS = ["onnxcam.mean", "onnxcam.std", "onnxcam.labels", "onnxcam.method", "onnxcam.layer", "onnxcam.options"]
LABEL_FILE = "labels.txt"  # the file hostile onnxcam.labels values name, written beside the model


def _graphs(g: onnx.GraphProto):
    yield g
    for n in g.node:
        for a in n.attribute:
            for sub in [a.g] if a.HasField("g") else list(a.graphs):
                yield from _graphs(sub)


def _tensor_names(g: onnx.GraphProto) -> list[str]:
    names = [*(i.name for i in g.input), *(o for n in g.node for o in n.output), *(t.name for t in g.initializer)]
    return list(dict.fromkeys(n for n in names if n))


def _rename(g: onnx.GraphProto, old: str, new: str) -> None:
    """Rename tensor `old` everywhere in the graph (its producers, readers, declarations and subgraph readers)."""
    for sub in _graphs(g):
        for n in sub.node:
            n.input[:] = [new if v == old else v for v in n.input]
            n.output[:] = [new if v == old else v for v in n.output]
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.name == old:
            vi.name = new
    for t in g.initializer:
        if t.name == old:
            t.name = new
    for t in g.sparse_initializer:
        if t.values.name == old:
            t.values.name = new


def _hostile_name(r, names: list[str]) -> str:
    kind = r.choices(["text", "internal", "derived", "existing"], [50, 25, 20, 5])[0]
    if kind == "text" or not names:
        return r.choice(HOSTILE_TEXT)
    if kind == "internal":
        return r.choice(INTERNAL_NAMES)
    other = r.choice(names)
    if kind == "derived":  # what onnxcam derives from a tensor name: its gradient, a flattened head, a perturbation
        return other + r.choice(["_grad", "_grad", "_onnxcam_2d", "_perturbed"])
    return other  # a name already taken: produced twice


def hostile_tensor_name(p, r):
    """Rename a tensor — the image input, a model output, a layer, a weight — to a hostile or colliding name."""
    g = p.graph
    names = _tensor_names(g)
    inits = {t.name for t in g.initializer}
    where = r.choices(["input", "output", "node", "initializer", "two"], [3, 3, 4, 1, 1])[0]
    pool = {"input": [i.name for i in g.input if i.name not in inits], "output": [o.name for o in g.output],
            "node": [o for n in g.node for o in n.output if o], "initializer": list(inits)}
    for _ in range(2 if where == "two" else 1):
        candidates = pool.get(where) or names
        if not candidates:
            return
        old = r.choice(candidates)
        _rename(g, old, _hostile_name(r, [n for n in names if n != old]))
        names = _tensor_names(g)


def hostile_node_name(p, r):
    """Node names (which --layer also matches): hostile, one shared by every node, or another node's tensor name."""
    nodes = list(p.graph.node)
    if not nodes:
        return
    choice = r.randrange(4)
    if choice == 0:
        same = r.choice(HOSTILE_TEXT + INTERNAL_NAMES)
        for n in nodes:
            n.name = same
    elif choice == 1:  # node names that are other tensors' names
        outputs = [o for n in nodes for o in n.output if o]
        for n in r.sample(nodes, min(len(nodes), r.randint(1, 5))):
            n.name = r.choice(outputs)
    else:
        for n in r.sample(nodes, min(len(nodes), r.randint(1, 3))):
            n.name = _hostile_name(r, _tensor_names(p.graph))


def hostile_graph_fields(p, r):
    """Graph, producer, domain, doc strings, dim_params and string attributes with hostile text (or bad UTF-8)."""
    text = r.choice(HOSTILE_TEXT)
    choice = r.randrange(6)
    if choice == 0:
        p.graph.name = text
    elif choice == 1:
        field_name = r.choice(["producer_name", "producer_version", "domain", "doc_string"])
        setattr(p, field_name, text)
        if r.random() < 0.3:
            p.model_version = r.choice([-1, 2**63 - 1])
    elif choice == 2:
        for x in [p.graph, *p.graph.node[: r.randint(1, 3)], *p.graph.input, *p.graph.output]:
            x.doc_string = text
    elif choice == 3:  # symbolic dims: the batch dim or a spatial one
        vi = r.choice([*p.graph.input, *p.graph.output])
        dims = vi.type.tensor_type.shape.dim
        if dims:
            d = dims[0] if r.random() < 0.6 else r.choice(dims)
            d.dim_param = text or "?"
            if r.random() < 0.3:
                d.denotation = text
    elif choice == 4:  # string attributes (bytes fields, never checked as UTF-8 by protobuf)
        n = _node(p, r)
        if n is not None:
            value = r.choice([b"\xff\xfe", b"NOTSET\x00", b"SAME_UPPER\n", "\u00e9".encode(), b"x" * 10_000])
            strings = [a for a in n.attribute if a.type == onnx.AttributeProto.STRING]
            if strings:
                r.choice(strings).s = value
            else:
                n.attribute.append(helper.make_attribute(r.choice(["auto_pad", "mode", "bogus"]), value))
    else:
        op = p.opset_import.add()
        op.domain, op.version = text, 1


LABEL_CONTENTS = [b"", b"\xff\xfe\x00c\x00a\x00t", b"cat\ndog\n", b"a\r\nb\r\n", b"x" * 1_000_000, b"\x00" * 100,
                  "\n".join(t for t in HOSTILE_TEXT if t).encode(), b"\n" * 100_000, "\u00e9\u4e2d\n".encode() * 20,
                  b"\x1b[2J\x1b[31m\n" * 10, b"cat\xe9\ndog\n", "\ufeffcat\n".encode()]


def hostile_metadata(p, r) -> dict[str, bytes] | None:
    """metadata_props with hostile keys and values, duplicated keys, and the keys onnxcam reads: onnxcam.mean/std
    that are not numbers, onnxcam.labels naming the model itself, a path, or a file beside the model that gets
    hostile contents (returned as a side file)."""
    side = None
    for _ in range(r.randint(1, 3)):
        key = r.choice(METADATA_KEYS * 3 + ["onnxcam.labels"] * 4) if r.random() < 0.7 else r.choice(HOSTILE_TEXT)
        if key == "onnxcam.labels":
            value = r.choice([LABEL_FILE] * 4 + ["../" + LABEL_FILE, "/tmp/" + LABEL_FILE, "model.onnx", "img", "..", "",
                              ".", r.choice(HOSTILE_TEXT)])
        elif key in ("onnxcam.mean", "onnxcam.std"):
            value = r.choice(["0.5,0.5,0.5", "0.2,0.2,0.2", "1", "0.5, 0.5, 0.5", " 1,1,1 ", "1,,1", "1e-7,1,1", "0x10",
                              "1_0", "\u0661,\u0662,\u0663", "abc", "1,2", "0,0,0", "nan,1,1", "1e999", "-1,-1,-1",
                              r.choice(HOSTILE_TEXT)])
        else:
            value = r.choice(HOSTILE_TEXT + ["gradcam", "{}", '{"steps": 1e999}'])
        if r.random() < 0.2:  # the same key twice (onnx.checker refuses that)
            p.metadata_props.add(key=key, value=r.choice(["0.5,0.5,0.5", LABEL_FILE, "gradcam", ""]))
        else:
            for prop in [q for q in p.metadata_props if q.key == key]:
                p.metadata_props.remove(prop)
        p.metadata_props.add(key=key, value=value)
        if key == "onnxcam.labels" and value.endswith(LABEL_FILE):
            side = {LABEL_FILE: r.choice(LABEL_CONTENTS)}
    return side


HOSTILE_MUTATIONS = [hostile_tensor_name, hostile_node_name, hostile_graph_fields, hostile_metadata]


PROTO_MUTATIONS = [drop_node, duplicate_node, swap_nodes, cycle, dangling, wrong_dtype, huge_dim, initializer_dims,
                   initializer_data, bad_attribute, change_op, bad_opset, bad_metadata, external_data, drop_field,
                   rename_io, insert_op, *HOSTILE_MUTATIONS]
# mutations that often survive validation (and so reach ONNX Runtime) are drawn more often
PROTO_WEIGHTS = {insert_op: 4, bad_attribute: 3, initializer_data: 2, bad_metadata: 2, hostile_tensor_name: 5,
                 hostile_node_name: 2, hostile_graph_fields: 2, hostile_metadata: 3}


# ---------------------------------------------------------------- mutations of the serialized bytes


def flip_bytes(data: bytes, r) -> bytes:
    b = bytearray(data)
    for _ in range(r.randint(1, 16)):
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8) if r.random() < 0.7 else r.randrange(1, 256)
    return bytes(b)


def truncate(data: bytes, r) -> bytes:
    return data[: r.randrange(len(data))]


def splice(data: bytes, r) -> bytes:
    i, j = sorted(r.randrange(len(data)) for _ in range(2))
    k = r.randrange(len(data))
    return data[:k] + data[i : j + 1] + data[k:] if r.random() < 0.5 else data[:i] + data[j:]


BYTE_MUTATIONS = [flip_bytes, truncate, splice]


# ---------------------------------------------------------------- images and options


def image_case(r, folder: Path) -> tuple[Path, str]:
    """Usually the sample cat; sometimes an empty, broken, grayscale, RGBA, tiny or odd-named image."""
    import cv2

    kind = r.choices(["cat", "empty", "truncated", "flipped", "gray", "rgba", "tiny", "odd_name", "text"],
                     [70, 3, 4, 4, 4, 4, 4, 4, 3])[0]
    data = CAT.read_bytes()
    name = "cat.jpg"
    if kind == "cat":
        return CAT, kind
    if kind == "empty":
        data = b""
    elif kind == "truncated":
        data = data[: r.randrange(len(data))]
    elif kind == "flipped":
        data = flip_bytes(data, r)
    elif kind in ("gray", "rgba", "tiny"):
        bgr = cv2.imread(str(CAT))
        image = {"gray": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), "rgba": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
                 "tiny": lambda: bgr[:1, :2]}[kind]()
        data, name = cv2.imencode(".png", image)[1].tobytes(), f"{kind}.png"
    elif kind == "odd_name":
        name = r.choice(["..jpg", "-rf.jpg", "a b\u00e9.jpg", ".hidden.jpg", "x" * 200 + ".jpg"])
    else:
        data, name = b"not an image\n", "text.png"
    path = folder / "img" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path, kind


def option_case(r, big: bool = False) -> list[str]:
    """Explain options: a method, and now and then a bad --steps, --batch-size, --target or --layer."""
    args = ["-m", r.choices(["gradcam", "gradcam++", "rsi-gradcam", "saliency", "ig", "scorecam"], [40, 10, 20, 10, 10, 10])[0]]
    if big and args[1] == "scorecam":  # one forward pass per channel: 1280 on the demo model, minutes on a CPU
        args[1] = "gradcam"
    if args[1] in ("rsi-gradcam", "ig"):
        args += ["--steps", str(r.choice([2, 3, 4]))]
    if r.random() < 0.25:
        flag = r.choice(["--steps", "--batch-size", "--target", "--layer", "--size", "--mean", "--std"])
        value = {"--steps": [0, -1, 10**6, 10**12, 2**63], "--batch-size": [0, -3, 1, 10**6, 10**12],
                 "--target": [-1, 9, 10, 10**6, 2**63, -(2**63)], "--layer": ["", "nonexistent", "input", "probs", "c1.w"],
                 "--size": [0, -1, 32, 10**6], "--mean": ["nan", "1,2", "inf,0,0", "0.5"],
                 "--std": ["0", "-1,1,1", "1e-40", "nan"]}[flag]
        args += [flag, str(r.choice(value))]
        if flag == "--steps":
            args[1] = "rsi-gradcam"
    if r.random() < 0.05:  # a hostile --layer (argv cannot carry NUL)
        args += ["--layer", r.choice([t for t in HOSTILE_TEXT + INTERNAL_NAMES if "\0" not in t and t])]
    return args


def export_option_case(r) -> list[str]:
    """Export options: -m gradcam (now and then another method), now and then a hostile --layer, --triton-name or
    --max-batch-size."""
    args = ["-m", "gradcam"]
    if r.random() < 0.15:  # methods whose export reads more of the model (the black baseline from its metadata, noise)
        args = r.choice([["-m", "rsi-gradcam", "--steps", "2"], ["-m", "ig", "--steps", "2"], ["-m", "gradcam++"],
                         ["-m", "smoothgrad", "--samples", "2"], ["-m", "saliency"]])
    if r.random() < 0.1:
        flag = r.choice(["--layer", "--triton-name", "--max-batch-size"])
        value = {"--layer": [t for t in HOSTILE_TEXT + INTERNAL_NAMES if "\0" not in t and t],
                 "--triton-name": ["..", ".", "a/b", "x" * 300, "-", "_", "a.b", "model", "CON", "\u00e9"],
                 "--max-batch-size": ["1", "65536", "0", "-1", "65537"]}[flag]
        args += [flag, r.choice(value)]
    return args


# ---------------------------------------------------------------- running cases


@dataclass
class Case:
    index: int
    base: str
    mutations: list[str]
    image: str
    options: list[str]
    export_options: list[str] = field(default_factory=list)
    check: bool = False  # also run `onnxcam check` when the model loads and is small
    runs: list[dict] = field(default_factory=list)

    @property
    def findings(self) -> list[str]:
        return sorted({k for run in self.runs for k in run["findings"]})


@dataclass
class Seed:
    """A model the mutations start from, and the files that must lie beside it (external data)."""

    data: bytes
    beside: dict[str, Path] = field(default_factory=dict)


def wild_seeds() -> dict[str, Seed]:
    """The exporter fixtures of tests/fixtures/wild, by manifest name."""
    manifest = json.loads((WILD / "manifest.json").read_text())
    return {f"wild:{name}": Seed((WILD / entry["file"]).read_bytes(), {f: WILD / f for f in entry["files"][1:]})
            for name, entry in manifest.items()}


def base_seeds(big_fraction: float = 0.0, wild_fraction: float = 0.0) -> dict[str, Seed]:
    seeds = {"small_cnn": Seed(small_cnn().SerializeToString())}
    if big_fraction > 0:
        seeds["efficientnet_lite0"] = Seed(DEMO.read_bytes())
    if wild_fraction > 0:
        seeds.update(wild_seeds())
    return seeds


def make_case(index: int, seed: int, folder: Path, base: dict[str, Seed], big_fraction: float,
              wild_fraction: float = 0.0) -> tuple[Case, Path, Path]:
    r = random.Random(seed * 1_000_003 + index)
    wild = sorted(k for k in base if k.startswith("wild:"))
    if r.random() < big_fraction:
        name = "efficientnet_lite0"
    elif wild and r.random() < wild_fraction:
        name = r.choice(wild)
    else:
        name = "small_cnn"
    data = base[name].data
    side: dict[str, bytes] = {}
    mutations = []
    for _ in range(r.choices([1, 2, 3], [70, 22, 8])[0]):
        if r.random() < 0.2:
            f = r.choice(BYTE_MUTATIONS)
            data = f(data, r)
        else:
            f = r.choices(PROTO_MUTATIONS, [PROTO_WEIGHTS.get(m, 1) for m in PROTO_MUTATIONS])[0]
            try:
                proto = onnx.load_model_from_string(data)
                extra = f(proto, r)
                data = proto.SerializeToString()
            except Exception as e:  # an earlier byte mutation left something protobuf cannot re-serialize
                mutations.append(f"{f.__name__}(skipped: {type(e).__name__})")
                continue
            side.update(extra or {})
        mutations.append(f.__name__)
    data = data.replace(BAD_UTF8_TOKEN, BAD_UTF8_BYTES)
    model = folder / "model.onnx"
    model.write_bytes(data)
    for file, source in base[name].beside.items():
        shutil.copyfile(source, folder / file)
    for file, content in side.items():
        (folder / file).write_bytes(content)
    image, kind = image_case(r, folder)
    options = option_case(r, big=name != "small_cnn")
    export_options = export_option_case(r)
    check = len(data) <= CHECK_MAX_BYTES and r.random() < 0.5
    return Case(index, name, mutations, kind, options, export_options, check), model, image


def _limit_memory(mb: int):
    def apply():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))

    return apply if mb and sys.platform.startswith("linux") else None


def run_cli(args: list[str], timeout: float, memory_mb: int, out: Path | None = None) -> dict:
    """Run one command; with --json among its args, a 0 exit must come with JSON on stdout (nothing else)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    start = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "onnxcam", *args], capture_output=True, timeout=timeout, env=env,
                                cwd=ROOT, preexec_fn=_limit_memory(memory_mb))
    except subprocess.TimeoutExpired:
        return {"args": args, "rc": None, "seconds": round(time.monotonic() - start, 2), "findings": ["hang"],
                "stderr": f"no answer after {timeout} s"}
    stdout = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    findings = []
    if result.returncode < 0:
        findings.append("crash")
    elif "Traceback" in stdout + stderr or result.returncode not in (0, 1, 2):
        findings.append("traceback")
    if "internal error" in stderr:
        findings.append("internal")
    if out is not None and out.exists() and any(p.name.endswith(".part") for p in out.rglob("*")):
        findings.append("partial")
    if "--json" in args and result.returncode == 0:
        try:
            json.loads(stdout)
        except ValueError:
            findings.append("stdout")
            stderr += f"\nstdout is not JSON: {stdout[:300]!r}"
    tail = [line for line in stderr.splitlines() if line.strip()]
    return {"args": args, "rc": result.returncode, "seconds": round(time.monotonic() - start, 2), "findings": findings,
            "stderr": "\n".join(tail[-20:]) if findings else (tail[-1] if tail else "")}


_TRITON_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(double)": "TYPE_FP64",
                 "tensor(int64)": "TYPE_INT64", "tensor(int32)": "TYPE_INT32", "tensor(uint8)": "TYPE_UINT8",
                 "tensor(int8)": "TYPE_INT8", "tensor(bool)": "TYPE_BOOL"}


def triton_problems(repo: Path) -> list[str]:
    """What is wrong with the Triton entries in `repo` that an export which exited 0 wrote: config.pbtxt must parse
    as Triton's ModelConfig and list exactly the inputs and outputs of the model.onnx beside it (ONNX Runtime's view:
    names in order, data types, dims after the batch; `target` is [1] reshaped to [])."""
    import onnxruntime as ort
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    entries = [d for d in repo.iterdir() if d.is_dir()] if repo.is_dir() else []
    if len(entries) != 1:
        return [f"expected one Triton entry in {repo.name}/, found {len(entries)}"]
    entry = entries[0]
    try:
        text = (entry / "config.pbtxt").read_bytes().decode("utf-8")
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
    except Exception as e:
        return [f"config.pbtxt does not parse as ModelConfig: {type(e).__name__}: {str(e)[:300]}"]
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(entry / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        return [f"ONNX Runtime cannot load the Triton model: {str(e).splitlines()[0][:300] if str(e) else type(e)}"]
    problems = []
    if config.name != entry.name or config.platform != "onnxruntime_onnx" or config.max_batch_size < 1:
        problems.append(f"config name/platform/max_batch_size {config.name[:60]!r} {config.platform!r} "
                        f"{config.max_batch_size} for entry {entry.name[:60]!r}")
    for what, declared, actual in (("input", config.input, session.get_inputs()),
                                   ("output", config.output, session.get_outputs())):
        if [d.name for d in declared] != [a.name for a in actual]:
            problems.append(f"config {what}s {[d.name[:60] for d in declared]} != model's "
                            f"{[a.name[:60] for a in actual]}")
            continue
        for d, a in zip(declared, actual):
            kind = model_config_pb2.DataType.Name(d.data_type)
            if _TRITON_TYPES.get(a.type) != kind:
                problems.append(f"{what} {d.name[:60]!r}: config {kind}, model {a.type}")
            if what == "input" and d.name == "target":
                want = ([1], [])
                got = (list(d.dims), list(d.reshape.shape) if d.HasField("reshape") else None)
            else:
                want = [x if isinstance(x, int) and x >= 0 else -1 for x in a.shape[1:]]
                got = list(d.dims)
            if got != want:
                problems.append(f"{what} {d.name[:60]!r}: config dims {got}, model {a.shape}")
    return problems


def run_case(index: int, seed: int, work: Path, base: dict[str, Seed], args) -> Case:
    folder = Path(tempfile.mkdtemp(prefix=f"case{index}-", dir=work))
    case, model, image = make_case(index, seed, folder, base, args.big_fraction, args.wild_fraction)
    layers = run_cli(["layers", str(model), *(["--json"] if index % 2 else [])], args.timeout, args.memory_mb)
    case.runs.append(layers)
    # a model that `layers` refused fails the same way in `explain` and `export` (all load it with load_model);
    # still run them on every k-th refused case so their paths see broken models too
    every = args.explain_refused_every
    if layers["rc"] == 0 or layers["findings"] or (every and index % every == 0):
        out = folder / "out"
        case.runs.append(run_cli(["explain", str(model), str(image), "--out", str(out), *case.options],
                                 args.timeout, args.memory_mb, out))
        exported = folder / "export"
        repo = exported / "repo"
        run = run_cli(["export", str(model), *case.export_options, "-o", str(exported / "explainer.onnx"),
                       "--triton", str(repo)], args.timeout, args.memory_mb, exported)
        if run["rc"] == 0:
            problems = triton_problems(repo)
            if problems:
                run["findings"].append("triton")
                run["stderr"] = "\n".join([run["stderr"], *problems]).strip()
        case.runs.append(run)
    if case.check and args.check and layers["rc"] == 0:
        case.runs.append(run_cli(["check", str(model)], args.timeout, args.memory_mb))
    if case.findings and args.keep:
        kept = Path(args.keep) / f"case{index}"
        shutil.copytree(folder, kept, dirs_exist_ok=True)
        (kept / "case.json").write_text(json.dumps(case.__dict__, indent=1, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    return case


def fuzz(cases: int = 1000, seed: int = 0, jobs: int = 2, timeout: float = 60, memory_mb: int = 4096,
         big_fraction: float = 0.02, case_start: int = 0, only: list[int] | None = None, keep: str | None = None,
         explain_refused_every: int = 4, progress=None, wild_fraction: float = 0.3, check: bool = True) -> list[Case]:
    """Run the cases; returns them with each run's return code, time, last stderr line and findings."""
    args = argparse.Namespace(timeout=timeout, memory_mb=memory_mb, big_fraction=big_fraction, keep=keep,
                              explain_refused_every=explain_refused_every, wild_fraction=wild_fraction, check=check)
    base = base_seeds(big_fraction, wild_fraction)
    indices = only or list(range(case_start, case_start + cases))
    with tempfile.TemporaryDirectory(prefix="onnxcam-fuzz-") as work, ThreadPoolExecutor(jobs) as pool:
        done = []
        for case in pool.map(lambda i: run_case(i, seed, Path(work), base, args), indices):
            done.append(case)
            if progress:
                progress(case)
    return done


def summary(cases: list[Case]) -> dict:
    runs = [run for c in cases for run in c.runs]
    counts = Counter(k for c in cases for k in c.findings)
    return {"cases": len(cases), "runs": len(runs), "ok": sum(run["rc"] == 0 for run in runs),
            "refused": sum(run["rc"] in (1, 2) and not run["findings"] for run in runs),
            **{k: counts.get(k, 0) for k in FINDINGS},
            "slowest_s": max((run["seconds"] for run in runs), default=0),
            "mean_s": round(sum(run["seconds"] for run in runs) / max(len(runs), 1), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case-start", type=int, default=0, help="first case index (cases are seeded per index)")
    parser.add_argument("--only", type=int, nargs="+", help="run just these case indices")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60, help="seconds per command before it counts as a hang")
    parser.add_argument("--memory-mb", type=int, default=4096, help="address-space limit of each command (0 = none)")
    parser.add_argument("--big-fraction", type=float, default=0.02, help="share of cases that mutate the demo model")
    parser.add_argument("--wild-fraction", type=float, default=0.3,
                        help="share of the other cases that start from a tests/fixtures/wild model (else the small CNN)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="never run `onnxcam check` (by default on half the small models that load)")
    parser.add_argument("--explain-refused-every", type=int, default=4, metavar="K",
                        help="also explain every K-th model that `layers` refused (1 = all, 0 = none)")
    parser.add_argument("--keep", help="copy each finding's model, image and case.json into this folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case, not only findings")
    args = parser.parse_args()

    def progress(case: Case) -> None:
        if case.findings or args.verbose:
            print(f"case {case.index} [{case.base}] {'+'.join(case.mutations)} image={case.image} "
                  f"{' '.join(case.options)} | export {' '.join(case.export_options)}: "
                  f"{', '.join(case.findings) or 'fine'}", flush=True)
            for run in case.runs:
                if run["findings"] or args.verbose:
                    print(f"  {run['args'][0]} rc={run['rc']} {run['seconds']}s {run['findings'] or ''}")
                    print("    " + run["stderr"].replace("\n", "\n    "))

    start = time.monotonic()
    cases = fuzz(args.cases, args.seed, args.jobs, args.timeout, args.memory_mb, args.big_fraction, args.case_start,
                 args.only, args.keep, args.explain_refused_every, progress, args.wild_fraction, args.check)
    report = summary(cases)
    report["wall_s"] = round(time.monotonic() - start, 1)
    print(json.dumps(report))
    sys.exit(1 if any(report[k] for k in FINDINGS) else 0)


if __name__ == "__main__":
    main()
