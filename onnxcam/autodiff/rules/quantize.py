"""QDQ models: QuantizeLinear → DequantizeLinear pairs, differentiated the way quantization-aware training does.

The integer tensor q between the two carries a float gradient (the builder lets QuantizeLinear's outputs through):
DequantizeLinear hands it ∂y/∂q = scale, QuantizeLinear turns it into ∂x with the straight-through estimator."""

from __future__ import annotations

from onnx import TensorProto

from ...errors import UnsupportedOpError
from . import rule

LIMITS = {
    TensorProto.INT8: (-128, 127), TensorProto.UINT8: (0, 255), TensorProto.INT16: (-32768, 32767),
    TensorProto.UINT16: (0, 65535), TensorProto.INT32: (-(2**31), 2**31 - 1),
    TensorProto.FLOAT8E4M3FN: (-448, 448), TensorProto.FLOAT8E4M3FNUZ: (-240, 240),
    TensorProto.FLOAT8E5M2: (-57344, 57344), TensorProto.FLOAT8E5M2FNUZ: (-57344, 57344),
}
LIMITS.update({getattr(TensorProto, name): limits for name, limits in
               [("INT4", (-8, 7)), ("UINT4", (0, 15)), ("INT2", (-2, 1)), ("UINT2", (0, 3))] if hasattr(TensorProto, name)})


def along_axis(b, n, t: str, x: str) -> str:
    """A scale or zero point shaped to broadcast against X: scalars as they are, 1-D ones along the node's axis."""
    if n.attrs.get("block_size", 0):
        raise UnsupportedOpError(n.op, n.name, "blocked quantization (block_size)")
    rank = b.rank(t)
    if rank == 0:
        return t
    if rank != 1:
        raise UnsupportedOpError(n.op, n.name, f"a rank-{rank} scale")
    axis = n.attrs.get("axis", 1) % b.rank(x)
    return b.op("Reshape", t, b.ints([-1] + [1] * (b.rank(x) - 1 - axis)))


@rule("DequantizeLinear")
def dequantize(b, n, dy):
    """y = (q − zero_point)·scale, so ∂y/∂q = scale (per tensor or along `axis`), the gradient of the integer q."""
    if any(n.needs[1:]):
        raise UnsupportedOpError(n.op, n.name, "gradients for scales computed at run time are not built")
    return [b.op("Mul", dy[0], along_axis(b, n, n.inputs[1], n.inputs[0]))]


@rule("QuantizeLinear")
def quantize(b, n, dy):
    """Straight-through estimator: the rounding counts as the identity and the saturation as a clip, so
    ∂q/∂x = 1/scale where qmin ≤ x/scale + zero_point ≤ qmax and 0 elsewhere. With DequantizeLinear's ∂y/∂q = scale:
    d DQ(Q(x))/dx = 1 inside [scale·(qmin − zero_point), scale·(qmax − zero_point)], 0 outside (TensorFlow's
    FakeQuant convention; torch's fake_quantize tests the rounded value, which keeps half a step more at each end).
    Per tensor and per axis; qmin, qmax from the quantized type (int8 [−128, 127], uint8 [0, 255], ...)."""
    if n.needs[1] or (n.input(2) and n.needs[2]):
        raise UnsupportedOpError(n.op, n.name, "gradients for scales computed at run time are not built")
    x, scale, zero = n.inputs[0], n.inputs[1], n.input(2)
    kind = _quantized_type(b, n)
    if kind not in LIMITS:
        raise UnsupportedOpError(n.op, n.name, f"quantized type {TensorProto.DataType.Name(kind)}")
    s = along_axis(b, n, scale, x)
    z = b.op("Div", x, s)
    if zero:
        z = b.op("Add", z, b.op("Cast", along_axis(b, n, zero, x), to=b.types[x]))
    low, high = (b.const(v, like=x) for v in LIMITS[kind])
    inside = b.op("And", b.op("GreaterOrEqual", z, low), b.op("LessOrEqual", z, high))
    return [b.op("Where", inside, b.op("Div", dy[0], s), b.const(0, like=x)), None, None]


def _quantized_type(b, n) -> int:
    """The output's type: inferred, else the zero point's, else output_dtype (opset 21), else uint8."""
    inferred = b.types.get(n.outputs[0])
    if inferred:
        return inferred
    if n.input(2):
        return b.types[n.input(2)]
    return n.attrs.get("output_dtype") or TensorProto.UINT8

