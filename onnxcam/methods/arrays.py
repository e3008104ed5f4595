"""The small array interface method definitions are written against: numpy for the engine, ONNX nodes for export.

A definition uses Python's arithmetic operators and the functions below, with negative axes, so the same code
runs on a chunk of rows (R, ...) in numpy and on the step-stacked tensors (S, N, ...) of an exported graph. Grids
are (…, K, *space) with `rank` spatial axes: 1 for signals, 2 for images, 3 for volumes; `ops.space` and
`ops.channel` name their axes."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..opencv import cv2
from .maps import normalize


class Axes:
    """The axes of (…, K, *space) grids of a given spatial rank."""

    rank = 2

    def resize_normalized(self, maps, size: tuple[int, ...]):
        """normalize(resize(maps))."""
        return normalize(self, self.resize(maps, size))

    @property
    def space(self) -> tuple[int, ...]:
        return tuple(range(-self.rank, 0))

    @property
    def channel(self) -> int:
        return -self.rank - 1


class NumpyArrays(Axes):
    """The interface on numpy arrays (the engine)."""

    def __init__(self, rank: int = 2):
        self.rank = rank

    @staticmethod
    def relu(t):
        return np.maximum(t, 0)

    @staticmethod
    def abs(t):
        return np.abs(t)

    @staticmethod
    def where_zero(t, value, otherwise):
        """`value` where t == 0, else `otherwise`."""
        return np.where(t == 0, value, otherwise)

    @staticmethod
    def div_or_zero(num, den):
        """num / den, 0 where den == 0."""
        return np.divide(num, den, out=np.zeros(np.broadcast_shapes(np.shape(num), np.shape(den))), where=den != 0)

    @staticmethod
    def sum(t, axis, keepdims: bool = False):
        return t.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def mean(t, axis, keepdims: bool = False):
        return t.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def max(t, axis, keepdims: bool = False):
        return t.max(axis=axis, keepdims=keepdims)

    @staticmethod
    def min(t, axis, keepdims: bool = False):
        return t.min(axis=axis, keepdims=keepdims)

    @staticmethod
    def clip(t, low: float, high: float):
        return np.clip(t, low, high)

    def channel_dot(self, w, a):
        """Σ_k w_k A^k: per-image grids a (N, K, *space) weighted by channel weights w (N, K, 1…)."""
        return (w * a).sum(axis=self.channel)

    @staticmethod
    def resize(maps, size: tuple[int, ...]):
        """(N, *space) → (N, *size), (bi/tri)linear with half-pixel centers (OpenCV INTER_LINEAR, ONNX Resize)."""
        maps = np.asarray(maps, np.float32)
        if len(size) == 2:
            h, w = size
            return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps])
        for axis, n in enumerate(size, start=1):
            maps = _linear(maps, axis, n)
        return maps

    @staticmethod
    def grid(t, layer):
        """(…, K, *space) view of a layer tensor (…, layer dims): channels-last transposed, class tokens dropped."""
        if layer.channels_first:
            return t
        if layer.layout == "NTD":
            h, w = layer.grid
            t = t[..., layer.class_tokens :, :]
            t = t.reshape(*t.shape[:-2], h, w, t.shape[-1])
        return np.moveaxis(t, -1, -layer.rank - 1)


def interpolation(n: int, size: int) -> np.ndarray:
    """(size, n) matrix of linear interpolation from n to size samples: half-pixel centers, clamped at the edges
    (ONNX Resize linear; OpenCV INTER_LINEAR when upscaling)."""
    pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    m = np.zeros((size, n))
    np.add.at(m, (np.arange(size), lo), 1 - (pos - lo))
    np.add.at(m, (np.arange(size), hi), pos - lo)
    return m.astype(np.float32)


def extreme_rows(r: np.ndarray) -> np.ndarray:
    """The rows of an interpolation matrix where any linear function of the samples has its min and max over the
    output: outputs between samples k and k + 1 lie on one segment, whose extremes are its outputs nearest to either
    end (the least and the most weight on k + 1)."""
    first = (r != 0).argmax(1)
    right = np.pad(r, ((0, 0), (0, 1)))[np.arange(len(r)), first + 1]  # the weight on k + 1 (none past the end)
    keep = set()
    for k in np.unique(first):
        on = np.flatnonzero(first == k)
        keep.update((on[right[on].argmin()], on[right[on].argmax()]))
    return np.array(sorted(keep))


def _linear(t: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Linear interpolation along one axis (see interpolation)."""
    if t.shape[axis] == size:
        return t
    return np.moveaxis(np.tensordot(interpolation(t.shape[axis], size), t, axes=([1], [axis])), 0, axis)


class Symbol:
    """A tensor of an ONNX graph under construction; operators emit nodes."""

    __array_ufunc__ = None  # numpy array ⊕ Symbol defers to the Symbol's reflected operator

    def __init__(self, arrays: OnnxArrays, name: str):
        self.arrays, self.name = arrays, name
        self.uniform: Symbol | None = None  # for a tensor equal at every spatial position: its (…, K, 1…) value

    def _bin(self, op: str, other, swap: bool = False) -> Symbol:
        a, b = self.name, self.arrays.lift(other).name
        return self.arrays.node(op, *((b, a) if swap else (a, b)))

    def __add__(self, o):
        return self._bin("Add", o)

    def __radd__(self, o):
        return self._bin("Add", o, swap=True)

    def __sub__(self, o):
        return self._bin("Sub", o)

    def __rsub__(self, o):
        return self._bin("Sub", o, swap=True)

    def __mul__(self, o):
        return self._bin("Mul", o)

    def __rmul__(self, o):
        return self._bin("Mul", o, swap=True)

    def __truediv__(self, o):
        return self._bin("Div", o)

    def __rtruediv__(self, o):
        return self._bin("Div", o, swap=True)

    def __neg__(self):
        return self.arrays.node("Neg", self.name)

    def __pow__(self, k: int):
        if k != int(k) or k < 1:
            raise ValueError("only positive integer powers are emitted")
        out = self
        for _ in range(int(k) - 1):
            out = out * self
        return out

    def __getitem__(self, index: slice) -> Symbol:
        """Slices along the first axis (the step axis of an exported graph)."""
        start, stop = index.start or 0, np.iinfo(np.int64).max if index.stop is None else index.stop
        return self.arrays.node("Slice", self.name, *map(self.arrays.ints, ([start], [stop], [0])))


class OnnxArrays(Axes):
    """The interface emitting ONNX nodes through the autodiff Builder (the exporter)."""

    def __init__(self, builder, rank: int = 2, map_size: tuple[int, ...] | None = None):
        """`map_size`: the spatial size of the maps `resize` gets, when known."""
        self.b, self.rank, self.map_size = builder, rank, map_size

    def node(self, op: str, *inputs: str, **attrs) -> Symbol:
        return Symbol(self, self.b.op(op, *inputs, **attrs))

    def lift(self, v) -> Symbol:
        if isinstance(v, Symbol):
            return v
        return Symbol(self, self.b.const(np.asarray(v, np.float32), dtype=np.float32))

    def ints(self, values) -> str:
        return self.b.ints(values)

    def relu(self, t: Symbol) -> Symbol:
        return self.node("Relu", t.name)

    def abs(self, t: Symbol) -> Symbol:
        return self.node("Abs", t.name)

    def where_zero(self, t: Symbol, value, otherwise) -> Symbol:
        zero = self.node("Equal", t.name, self.lift(0.0).name)
        return self.node("Where", zero.name, self.lift(value).name, self.lift(otherwise).name)

    def div_or_zero(self, num, den: Symbol) -> Symbol:
        safe = self.where_zero(den, 1.0, den)
        return self.where_zero(den, 0.0, self.lift(num) / safe)

    def _reduce(self, op: str, t: Symbol, axis, keepdims: bool) -> Symbol:
        axes = [axis] if isinstance(axis, int) else list(axis)
        return Symbol(self, self.b.reduce(op, t.name, axes, keepdims=int(keepdims)))

    def sum(self, t, axis, keepdims: bool = False):
        return self._reduce("ReduceSum", t, axis, keepdims)

    def mean(self, t, axis, keepdims: bool = False):
        if t.uniform is not None and keepdims and tuple(np.atleast_1d(axis)) == self.space:
            return t.uniform
        return self._reduce("ReduceMean", t, axis, keepdims)

    def max(self, t, axis, keepdims: bool = False):
        return self._reduce("ReduceMax", t, axis, keepdims)

    def min(self, t, axis, keepdims: bool = False):
        return self._reduce("ReduceMin", t, axis, keepdims)

    def clip(self, t: Symbol, low: float, high: float) -> Symbol:
        return self.node("Clip", t.name, self.lift(low).name, self.lift(high).name)

    def channel_dot(self, w, a: Symbol) -> Symbol:
        """As a batched matrix product (N, 1, K)·(N, K, positions): ONNX Runtime's broadcast Mul and ReduceSum over
        the channel axis take several times as long."""
        row = self.node("Reshape", self.lift(w).name, self.ints([0, 1, -1]))
        flat = self.node("Reshape", a.name, self.ints([0, 0, -1]))
        return self.node("Reshape", self.node("MatMul", row.name, flat.name).name, self.ints([0, *self.map_size]))

    def resize(self, maps: Symbol, size: tuple[int, ...]) -> Symbol:
        """(N, *map_size) → (N, *size), linear with half-pixel centers: a product with one interpolation matrix per
        axis when map_size is known (cheaper than Resize and the same on every provider), else Resize."""
        if self.map_size is not None:
            return self._products(maps, size)
        four = self.node("Unsqueeze", maps.name, self.ints([1]))
        sizes = self.node("Concat", self.node("Shape", four.name, end=2).name, self.ints(list(size)), axis=0)
        resized = self.node("Resize", four.name, "", "", sizes.name, mode="linear",
                            coordinate_transformation_mode="half_pixel")
        return self.node("Squeeze", resized.name, self.ints([1]))

    def resize_normalized(self, maps: Symbol, size: tuple[int, ...]) -> Symbol:
        """normalize(resize(maps)) with no pass over the resized maps but the resize itself (and a clip of its
        round-off): the interpolation's rows sum to one, so shifting and scaling commute with it, and its min and
        max over the output are those over the few outputs of extreme_rows, a small product of the maps."""
        if self.map_size is None:
            return super().resize_normalized(maps, size)
        small = normalize(self, maps, over=self._products(maps, size, extreme_rows))
        return self.clip(self._products(small, size), 0.0, 1.0)

    def _products(self, maps: Symbol, size: tuple[int, ...], rows=None) -> Symbol:
        """Last axis: maps · Rᵀ; second-last: R · maps; third-last (volumes): R · maps viewed as (N, d, h·w).
        `rows(R)`: the rows of each R kept (all by default)."""
        out, dims = maps, list(self.map_size)
        for k in range(len(dims)):
            axis = len(dims) - 1 - k
            n, m = self.map_size[axis], size[axis]
            if n == m:
                continue
            r = interpolation(n, m)
            r = r if rows is None else r[rows(r)]
            dims[axis] = len(r)
            if k == 0:
                out = self.node("MatMul", out.name, self.lift(r.T).name)
            elif k == 1:
                out = self.node("MatMul", self.lift(r).name, out.name)
            else:
                flat = self.node("Reshape", out.name, self.ints([0, n, -1]))
                out = self.node("Reshape", self.node("MatMul", self.lift(r).name, flat.name).name, self.ints([0, *dims]))
        return out

    def grid(self, t: Symbol, layer) -> Symbol:
        """(S, N, K, *space) from a layer tensor (S, N, layer dims)."""
        if layer.channels_first:
            return t
        if layer.layout == "NTD":
            h, w = layer.grid
            tokens = self.node("Slice", t.name, self.ints([layer.class_tokens]), self.ints([np.iinfo(np.int64).max]),
                               self.ints([2]))
            t = self.node("Reshape", tokens.name, self.ints([0, 0, h, w, layer.shape[2]]))
        r = layer.rank
        return self.node("Transpose", t.name, perm=[0, 1, r + 2, *range(2, r + 2)])

    def cast_float(self, name: str, elem_type: int) -> Symbol:
        return Symbol(self, name) if elem_type == TensorProto.FLOAT else self.node("Cast", name, to=TensorProto.FLOAT)
