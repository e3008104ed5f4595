"""torch.autograd on the piece of each kink that ONNX Runtime's forward pass chose (not a test module).

A ReLU/ReLU6/HardSwish/MaxPool network is piecewise smooth. Where a pre-activation lies within float32
rounding of a kink (or two pooled values tie), torch and ONNX Runtime may land on different pieces, and each
such unit moves a whole receptive field of the input gradient: torch's own float32 gradient of ResNet-50 is
only 0.99988 cosine-close to its float64 one. `Kinks` makes torch take every kink decision (the ReLU, ReLU6,
HardSwish and HardSigmoid piece, the MaxPool argmax) from the export's own forward pass in ONNX Runtime, so
torch.autograd computes the gradient of the function ONNX Runtime evaluated, and the comparison with onnxcam
is as tight as on smooth networks. The decisions come from ORT running the untouched export, never onnxcam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.overrides import TorchFunctionMode

KINK_OPS = ("Relu", "Clip", "MaxPool", "HardSwish", "HardSigmoid")
ELEMENTWISE = {"relu": "Relu", "relu_": "Relu", "relu6": "Clip", "hardswish": "HardSwish", "hardswish_": "HardSwish",
               "hardsigmoid": "HardSigmoid", "hardsigmoid_": "HardSigmoid"}
MAXPOOL = {"max_pool2d", "_max_pool2d"}


@dataclass
class Kink:
    op: str  # the ONNX op type
    value: np.ndarray  # ORT's input of the node (the pre-activation); MaxPool: ORT's output
    indices: np.ndarray | None = None  # MaxPool: ORT's argmax, flat into the N·C·H·W input


def onnx_kinks(path: str, x: np.ndarray, input_name: str, options: ort.SessionOptions) -> list[Kink]:
    """Every kink node's input (MaxPool: output and argmax) of the export on input x, in graph order.

    `options` must be those of the session under test: ORT's fusions change float32 rounding, and so decisions."""
    proto = onnx.load(path)
    wanted = []
    for node in proto.graph.node:
        if node.op_type == "MaxPool":
            if len(node.output) < 2 or not node.output[1]:
                del node.output[1:]
                node.output.append(node.output[0] + "/indices")
            wanted.append((node.op_type, node.output[0], node.output[1]))
        elif node.op_type in KINK_OPS:
            wanted.append((node.op_type, node.input[0], None))
    outputs = {o.name for o in proto.graph.output}
    names = list(dict.fromkeys(n for _, *pair in wanted for n in pair if n))
    proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in outputs)
    sess = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = dict(zip(names, sess.run(names, {input_name: x})))
    return [Kink(op, values[value], values[idx] if idx else None) for op, value, idx in wanted]


class Kinks(TorchFunctionMode):
    """Inside `with Kinks(kinks):` every ReLU / ReLU6 / HardSwish / HardSigmoid / max_pool2d call takes the next
    recorded ONNX decision.

    Each call is checked against its ONNX node (op, shape, values within 1e-3 of their scale), so a mismatch
    between torch's call order and the graph's node order fails loudly instead of pairing wrong units."""

    def __init__(self, kinks: list[Kink]):
        super().__init__()
        self.kinks, self.used, self.flips = kinks, 0, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("hardtanh", "hardtanh_") and _hardtanh_bounds(args, kwargs) == (0.0, 6.0):
            name = "relu6"
        if name in ELEMENTWISE:
            return self._piecewise(args[0], ELEMENTWISE[name])
        if name in MAXPOOL:
            return self._maxpool(func, args, kwargs)
        return func(*args, **kwargs)

    def _next(self, op: str, shape) -> Kink:
        assert self.used < len(self.kinks), f"torch calls more kinks than the graph has ({len(self.kinks)})"
        kink = self.kinks[self.used]
        self.used += 1
        assert kink.op == op and kink.value.shape == tuple(shape), (
            f"kink {self.used}: torch {op} {tuple(shape)} vs ONNX {kink.op} {kink.value.shape}")
        return kink

    def _piecewise(self, x: torch.Tensor, op: str) -> torch.Tensor:
        """The piece ORT's pre-activation lies on, applied to torch's x (same value, ORT's derivative)."""
        kink = self._next(op, x.shape)
        _check(x, kink.value, self.used)
        ort_x = torch.from_numpy(kink.value)
        zero = torch.zeros_like(x)
        if op == "Relu":
            pieces = [(ort_x > 0, x)]
        elif op == "Clip":
            pieces = [(ort_x <= 0, zero), (ort_x >= 6, zero + 6), (ort_x > 0, x)]
        elif op == "HardSwish":
            pieces = [(ort_x < -3, zero), (ort_x > 3, x), (ort_x >= -3, x * (x + 3) / 6)]  # torch: ±3 inside
        else:  # HardSigmoid, torch's alpha 1/6 and beta 1/2
            pieces = [(ort_x <= -3, zero), (ort_x >= 3, zero + 1), (ort_x > -3, x / 6 + 0.5)]
        out, taken = zero, torch.zeros_like(x, dtype=torch.bool)
        for where, value in pieces:
            where = where & ~taken
            out, taken = torch.where(where, value, out), taken | where
        with torch.no_grad():
            self.flips += int(_pieces(x.detach(), op).ne(_pieces(ort_x.to(x.dtype), op)).sum())
        return out

    def _maxpool(self, func, args, kwargs) -> torch.Tensor:
        x = args[0]
        own = func(*args, **kwargs)
        assert not isinstance(own, tuple), "max_pool2d with return_indices is not transplanted"
        kink = self._next("MaxPool", own.shape)
        indices = torch.from_numpy(kink.indices.astype(np.int64))
        out = x.reshape(-1)[indices.reshape(-1)].reshape(indices.shape)
        self.flips += int((out != own).sum())  # a near-tie resolved the other way
        _check(out, kink.value, self.used)
        return out


def _pieces(x: torch.Tensor, op: str) -> torch.Tensor:
    """Which piece each element lies on (0 below, 1 inside, 2 above the linear or curved part)."""
    if op == "HardSwish":  # torch's derivative takes x = ±3 with the middle piece
        return (x >= -3).int() + (x > 3).int()
    low, high = {"Relu": (0.0, float("inf")), "Clip": (0.0, 6.0)}.get(op, (-3.0, 3.0))
    return (x > low).int() + (x >= high).int()


def _hardtanh_bounds(args, kwargs) -> tuple[float, float]:
    low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    high = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    return float(low), float(high)


def _check(got: torch.Tensor, value: np.ndarray, k: int) -> None:
    diff = float((got.detach().double() - torch.from_numpy(value).double()).abs().max())
    scale = float(np.abs(value).max()) + 1e-30
    assert diff <= 1e-3 * scale, f"kink {k}: torch and ONNX values differ by {diff / scale:.1e} of their scale"
