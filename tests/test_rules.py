"""Every gradient rule against float64 finite differences: one table row per op × attribute variant."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from opcheck import Case, check, check_model, rand

import onnxcam
from onnxcam.autodiff.rules import RULES

I64, F32, F64 = np.int64, TensorProto.FLOAT, TensorProto.DOUBLE


def ints(*values):
    return np.array(values, I64)


def floats(*values):
    return np.array(values, np.float64)


def scales(*values):
    return np.array(values, np.float32)


def pos(*shape, seed=0):
    """Positive inputs, away from 0 (Log, Sqrt, Reciprocal, Pow bases, variances)."""
    return rand(*shape, seed=seed, low=0.5, high=2.0)


def grid(*shape):
    """Multiples of 1/1024 in [-1, 1]: exact in float32, so Cast rows can use the step 2**-10."""
    return np.round(rand(*shape) * 1024) / 1024


X4, W33 = rand(1, 2, 5, 5), rand(3, 2, 3, 3, seed=1)
NORM = [rand(2, 3, 2, 2), rand(3, seed=1), rand(3, seed=2), rand(3, seed=3), pos(3, seed=4)]

CASES = [
    # Conv: dX = ConvTranspose(dY, W) with explicit pads and output_padding
    Case("Conv", [X4, W33], dict(pads=[1, 1, 1, 1]), const=(1,), id="Conv-pads"),
    Case("Conv", [rand(2, 4, 7, 6), rand(6, 2, 3, 3, seed=1)], dict(group=2, strides=[2, 2], pads=[1, 0, 0, 1]),
         const=(1,), id="Conv-group-stride-asym"),
    Case("Conv", [rand(1, 3, 5, 5), rand(3, 1, 3, 3, seed=1)], dict(group=3, pads=[1, 1, 1, 1]), const=(1,),
         id="Conv-depthwise"),
    Case("Conv", [rand(1, 2, 7, 6), W33], dict(strides=[2, 3]), const=(1,), id="Conv-strides-remainder"),
    Case("Conv", [rand(1, 2, 7, 6), W33], dict(dilations=[2, 1], strides=[1, 2], pads=[2, 1, 1, 0]), const=(1,),
         id="Conv-dilations"),
    Case("Conv", [rand(1, 2, 5, 6), W33], dict(auto_pad="SAME_UPPER", strides=[2, 2]), const=(1,),
         id="Conv-same-upper"),
    Case("Conv", [rand(1, 2, 5, 6), rand(3, 2, 2, 2, seed=1)], dict(auto_pad="SAME_LOWER", strides=[2, 1]),
         const=(1,), id="Conv-same-lower"),
    Case("Conv", [rand(1, 2, 6, 5), W33], dict(auto_pad="VALID", strides=[2, 2]), const=(1,), id="Conv-valid"),
    Case("Conv", [rand(2, 2, 9), rand(3, 2, 3, seed=1), rand(3, seed=2)], dict(strides=[2], pads=[1, 0]),
         const=(1, 2), id="Conv-1d-bias"),
    # stride 1: Conv with the weights flipped in-graph (channels swapped per group, kernel reversed)
    Case("Conv", [rand(1, 4, 6, 5), rand(6, 2, 3, 2, seed=1)], dict(group=2, dilations=[2, 1], pads=[2, 0, 1, 1]),
         const=(1,), id="Conv-stride1-group-dilations-asym"),
    Case("Conv", [rand(1, 2, 7), rand(3, 2, 3, seed=1)], dict(auto_pad="SAME_LOWER"), const=(1,),
         id="Conv-1d-stride1-same-lower"),
    Case("Conv", [rand(1, 2, 4, 4), rand(3, 2, 1, 1, seed=1)], dict(pads=[1, 0, 0, 1]), const=(1,),
         id="Conv-stride1-pad-beyond-kernel"),
    # ConvTranspose: dX = Conv(dY, W) with the same geometry
    Case("ConvTranspose", [rand(1, 2, 3, 3), rand(2, 3, 3, 3, seed=1)], const=(1,), id="ConvTranspose"),
    Case("ConvTranspose", [rand(1, 2, 3, 4), rand(2, 2, 3, 3, seed=1)], dict(strides=[2, 2], pads=[1, 0, 0, 1]),
         const=(1,), id="ConvTranspose-strides-pads"),
    Case("ConvTranspose", [rand(1, 2, 3, 3), rand(2, 2, 3, 3, seed=1)],
         dict(strides=[2, 3], pads=[1, 1, 1, 1], output_padding=[1, 2]), const=(1,), id="ConvTranspose-output-padding"),
    Case("ConvTranspose", [rand(1, 4, 3, 3), rand(4, 1, 3, 3, seed=1)], dict(group=2, strides=[2, 2]), const=(1,),
         reference="ort", eps=0.5, id="ConvTranspose-group"),
    Case("ConvTranspose", [rand(1, 2, 3, 3), rand(2, 2, 2, 3, seed=1)], dict(dilations=[2, 2], pads=[1, 0, 0, 1]),
         const=(1,), id="ConvTranspose-dilations"),
    Case("ConvTranspose", [rand(1, 2, 3, 3), rand(2, 2, 3, 3, seed=1)], dict(auto_pad="SAME_UPPER", strides=[1, 1]),
         const=(1,), id="ConvTranspose-same-upper"),
    Case("ConvTranspose", [rand(1, 2, 3, 3), rand(2, 2, 4, 4, seed=1)],
         dict(auto_pad="SAME_LOWER", strides=[2, 2]), const=(1,), id="ConvTranspose-same-lower"),
    Case("ConvTranspose", [rand(1, 2, 3, 3), rand(2, 2, 3, 3, seed=1)], dict(strides=[2, 2], output_shape=[5, 8]),
         const=(1,), reference="ort", eps=0.5, id="ConvTranspose-output-shape"),
    Case("ConvTranspose", [rand(1, 2, 4), rand(2, 3, 3, seed=1), rand(3, seed=2)], dict(strides=[2], pads=[0, 1]),
         const=(1, 2), id="ConvTranspose-1d-bias"),
    # Gemm and MatMul
    Case("Gemm", [rand(3, 4), rand(4, 5, seed=1)], id="Gemm"),
    Case("Gemm", [rand(4, 3), rand(4, 5, seed=1)], dict(transA=1), id="Gemm-transA"),
    Case("Gemm", [rand(3, 4), rand(5, 4, seed=1)], dict(transB=1), id="Gemm-transB"),
    Case("Gemm", [rand(4, 3), rand(5, 4, seed=1), rand(5, seed=2)], dict(transA=1, transB=1, alpha=0.5, beta=2.0),
         id="Gemm-transAB-alpha-beta-C"),
    Case("Gemm", [rand(3, 4), rand(5, 4, seed=1), rand(3, 1, seed=2)], dict(transB=1, beta=0.5), const=(1,),
         id="Gemm-C-column"),
    Case("Gemm", [rand(3, 4), rand(4, 5, seed=1), floats(0.3)], dict(alpha=2.0), const=(1, 2), id="Gemm-C-scalar"),
    Case("MatMul", [rand(3, 4), rand(4, 5, seed=1)], id="MatMul"),
    Case("MatMul", [rand(2, 3, 4), rand(2, 4, 5, seed=1)], id="MatMul-batched"),
    Case("MatMul", [rand(2, 1, 3, 4), rand(3, 4, 2, seed=1)], id="MatMul-broadcast-batch"),
    Case("MatMul", [rand(3, 4), rand(2, 4, 5, seed=1)], id="MatMul-2d-3d"),
    Case("MatMul", [rand(2, 3, 4), rand(4, 5, seed=1)], const=(1,), id="MatMul-3d-2d-weight"),
    # Einsum (MaxViT attention, linear layers, outer products)
    Case("Einsum", [rand(1, 2, 3, 4), rand(1, 2, 4, 3, seed=1)], dict(equation="bhij,bhjd->bhid"), id="Einsum-attn-av"),
    Case("Einsum", [rand(1, 2, 3, 4), rand(1, 2, 2, 4, seed=1)], dict(equation="bhid,bhjd->bhij"), id="Einsum-attn-qk"),
    Case("Einsum", [rand(2, 3, 4), rand(4, 5, seed=1)], dict(equation="bij,jk->bik"), id="Einsum-linear"),
    Case("Einsum", [rand(2, 3, 4), rand(2, 4, 5, seed=1)], dict(equation="bij, bjk"), id="Einsum-implicit"),
    Case("Einsum", [rand(3, 4)], dict(equation="ij->ji"), id="Einsum-transpose"),
    Case("Einsum", [rand(3, 4)], dict(equation="ij->i"), id="Einsum-sum-expand"),
    Case("Einsum", [rand(3, 4), rand(3, 5, seed=1)], dict(equation="ij,ik->k"), id="Einsum-only-in-one-operand"),
    Case("Einsum", [rand(3), rand(4, seed=1)], dict(equation="i,j->ij"), id="Einsum-outer"),
    Case("Einsum", [rand(2, 3, 4), rand(4, 5, seed=1)], dict(equation="...ij,jk->...ik"), id="Einsum-ellipsis"),
    Case("Einsum", [rand(2, 3, 4), rand(1, 4, 2, seed=1)], dict(equation="...ij,...jk->...ik"),
         id="Einsum-ellipsis-broadcast"),
    Case("Einsum", [rand(1, 2, 2, 3), rand(2, 2, 3, seed=1)], dict(equation="bhwc,hkc->bhwk"), id="Einsum-relpos"),
    # Normalization
    Case("BatchNormalization", NORM, dict(epsilon=1e-3), const=(1, 2, 3, 4), id="BatchNormalization"),
    Case("BatchNormalization", [rand(4, 3), *NORM[1:]], const=(1, 2, 3, 4), id="BatchNormalization-2d"),
    Case("LayerNormalization", [rand(2, 3, 4), rand(4, seed=1), rand(4, seed=2)], const=(1, 2), id="LayerNorm"),
    Case("LayerNormalization", [rand(2, 3, 4), rand(3, 4, seed=1)], dict(axis=1, epsilon=1e-2), const=(1,),
         id="LayerNorm-axis1-no-bias"),
    Case("LayerNormalization", [rand(2, 3, 4), rand(4, seed=1), rand(4, seed=2)], dict(axis=-1),
         id="LayerNorm-scale-bias-wrt"),
    Case("InstanceNormalization", [rand(2, 3, 2, 3), rand(3, seed=1), rand(3, seed=2)], const=(1, 2),
         id="InstanceNorm"),
    Case("InstanceNormalization", [rand(2, 3, 4), rand(3, seed=1), rand(3, seed=2)], dict(epsilon=1e-2),
         id="InstanceNorm-1d-scale-bias-wrt"),
    # GroupNormalization: onnx's checker rejects the opset-18 form; stash_type=11 keeps the reference in float64
    Case("GroupNormalization", [rand(2, 4, 2, 2), rand(4, seed=1), rand(4, seed=2)], dict(num_groups=2, stash_type=11),
         const=(1, 2), opset=21, id="GroupNorm-21"),
    Case("GroupNormalization", [rand(2, 4, 3), rand(4, seed=1), rand(4, seed=2)],
         dict(num_groups=2, epsilon=1e-2, stash_type=11), opset=21, id="GroupNorm-21-scale-bias-wrt"),
    Case("RMSNormalization", [rand(2, 3, 4), rand(4, seed=1)], const=(1,), opset=23, reference="ort",
         id="RMSNorm-23"),
    Case("RMSNormalization", [rand(2, 3, 4), rand(3, 4, seed=1)], dict(axis=1, epsilon=1e-2), opset=23,
         reference="ort", id="RMSNorm-23-axis1-scale-wrt"),
    Case("LpNormalization", [rand(2, 3, 4)], dict(axis=1), id="LpNormalization-p2"),
    Case("LpNormalization", [rand(3, 4)], dict(p=1), reference="ort", id="LpNormalization-p1"),  # onnx's: Σx, not Σ|x|
    # LRN (ONNX Runtime's CPU takes odd sizes only); onnx's reference LRN is replaced in opcheck (it loops over N)
    Case("LRN", [rand(2, 7, 3, 2, low=-2, high=2)], dict(size=5, alpha=1e-4, beta=0.75, bias=2.0), id="LRN-alexnet"),
    Case("LRN", [rand(2, 7, 3, 2, low=-2, high=2)], dict(size=3, alpha=0.5, beta=0.9, bias=1.5), id="LRN-size3"),
    Case("LRN", [rand(1, 6, 2, 3, low=-2, high=2)], dict(size=5, alpha=2.0, beta=0.75), id="LRN-size5"),
    Case("LRN", [rand(1, 3, 2, 2, low=-2, high=2)], dict(size=1, alpha=1.0, beta=0.5), id="LRN-size1"),
    Case("LRN", [rand(1, 4, 2, 2, low=-2, high=2)], dict(size=7, alpha=1.0, beta=1.5, bias=0.5),
         id="LRN-window-wider-than-channels"),
    # Pooling
    Case("MaxPool", [rand(1, 2, 4, 4)], dict(kernel_shape=[2, 2], strides=[2, 2]), id="MaxPool"),
    Case("MaxPool", [rand(1, 2, 7, 7)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
         id="MaxPool-ceil-overlap"),
    Case("MaxPool", [rand(1, 2, 5, 6)], dict(kernel_shape=[3, 2], pads=[1, 0, 0, 1]), id="MaxPool-asym-pads"),
    Case("MaxPool", [rand(1, 1, 6, 6)], dict(kernel_shape=[2, 2], dilations=[2, 2], strides=[1, 2]),
         id="MaxPool-dilations"),
    Case("MaxPool", [rand(2, 2, 7)], dict(kernel_shape=[3], strides=[2]), id="MaxPool-1d"),
    Case("MaxPool", [rand(1, 2, 5, 5)], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
         id="MaxPool-same-upper"),
    Case("MaxPool", [rand(1, 2, 4, 4)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), outputs=2,
         id="MaxPool-indices-output"),
    Case("AveragePool", [rand(1, 2, 5, 5)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), id="AveragePool-exclude-pad"),
    Case("AveragePool", [rand(1, 2, 5, 5)], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
         id="AveragePool-include-pad"),
    Case("AveragePool", [rand(1, 2, 6, 6)], dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
         id="AveragePool-ceil"),
    Case("AveragePool", [rand(1, 2, 6, 7)], dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1,
         count_include_pad=1), id="AveragePool-ceil-include-pad"),
    Case("AveragePool", [rand(1, 2, 7, 6)], dict(kernel_shape=[2, 3], strides=[3, 2], pads=[0, 1, 1, 0]),
         id="AveragePool-strides-asym-pads"),
    Case("AveragePool", [rand(1, 1, 6, 6)], dict(kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1]),
         opset=19, id="AveragePool-dilations-19"),
    Case("AveragePool", [rand(2, 2, 7)], dict(kernel_shape=[3], strides=[2]), id="AveragePool-1d"),
    Case("AveragePool", [rand(1, 2, 5, 5)], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
         id="AveragePool-same-upper"),
    Case("GlobalAveragePool", [rand(2, 3, 3, 4)]),
    Case("GlobalMaxPool", [rand(2, 3, 3, 4)]),
    # Spatial sizes unknown to shape inference (MobileViT-style unfold reshapes): sizes and pads from Shape at run time
    *[
        Case(op, inputs, attrs, const=(1,) if op.startswith("Conv") else (), symbolic=True, id=f"{op}-symbolic-{tag}")
        for op, inputs, attrs, tag in [
            ("Conv", [rand(2, 4, 7, 6), rand(6, 2, 3, 3, seed=1)], dict(group=2, strides=[2, 2], pads=[1, 0, 0, 1]),
             "group-stride-asym"),
            ("Conv", [rand(1, 2, 7, 6), W33], dict(dilations=[2, 1], strides=[1, 2], pads=[2, 1, 1, 0]), "dilations"),
            ("Conv", [rand(1, 2, 5, 6), W33], dict(auto_pad="SAME_UPPER", strides=[2, 2]), "same-upper"),
            ("Conv", [rand(1, 2, 5, 6), rand(3, 2, 2, 2, seed=1)], dict(auto_pad="SAME_LOWER", strides=[2, 1]),
             "same-lower"),
            ("Conv", [rand(1, 2, 5, 5), W33], dict(auto_pad="SAME_UPPER"), "same-stride1"),
            ("Conv", [rand(2, 2, 9), rand(3, 2, 3, seed=1)], dict(strides=[3], pads=[1, 0]), "1d"),
            ("ConvTranspose", [rand(1, 2, 3, 3), rand(2, 2, 3, 3, seed=1)], dict(strides=[2, 3], pads=[1, 1, 1, 1]),
             "strides-pads"),
            ("ConvTranspose", [rand(1, 2, 3, 3), rand(2, 2, 4, 4, seed=1)], dict(auto_pad="SAME_UPPER", strides=[2, 2]),
             "same-upper"),
            ("ConvTranspose", [rand(1, 2, 3, 3), rand(2, 2, 4, 3, seed=1)], dict(auto_pad="SAME_LOWER", strides=[2, 1]),
             "same-lower"),
            ("MaxPool", [rand(1, 2, 7, 7)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
             "ceil"),
            ("AveragePool", [rand(1, 2, 6, 7)], dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1],
             ceil_mode=1, count_include_pad=1), "ceil-include-pad"),
            ("AveragePool", [rand(1, 2, 7, 6)], dict(kernel_shape=[2, 3], strides=[3, 2], pads=[0, 1, 1, 0]),
             "strides-asym-pads"),
            ("AveragePool", [rand(1, 2, 5, 6)], dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
             "same-upper"),
            ("AveragePool", [rand(1, 2, 6, 5)], dict(kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
             "same-lower"),
            ("AveragePool", [rand(2, 2, 7)], dict(kernel_shape=[3], strides=[2], ceil_mode=1), "1d-ceil"),
            ("GlobalMaxPool", [rand(2, 3, 3, 4)], {}, "2d"),
            ("GlobalAveragePool", [rand(2, 3, 3, 4)], {}, "2d"),
        ]
    ],
    # Reductions (axes as input from opset 18; as attribute for ReduceMean/ReduceMax at opset 17)
    Case("ReduceMean", [rand(2, 3, 4), ints(1)], id="ReduceMean-axes-input"),
    Case("ReduceMean", [rand(2, 3, 4), ints(-1, 0)], dict(keepdims=0), id="ReduceMean-keepdims0"),
    Case("ReduceMean", [rand(2, 3, 4)], id="ReduceMean-all-axes"),
    Case("ReduceMean", [rand(2, 3, 4)], dict(axes=[2, 1], keepdims=0), opset=17, id="ReduceMean-17-attr"),
    Case("ReduceMean", [rand(2, 3, 4), ints()], dict(noop_with_empty_axes=1), id="ReduceMean-noop"),
    Case("ReduceSum", [rand(2, 3, 4), ints(1)], id="ReduceSum-axes-input"),
    Case("ReduceSum", [rand(2, 3, 4), ints(0, 2)], dict(keepdims=0), id="ReduceSum-keepdims0"),
    Case("ReduceSum", [rand(2, 3, 4)], dict(keepdims=0), id="ReduceSum-all-axes"),
    Case("ReduceMax", [rand(2, 3, 4), ints(1)], id="ReduceMax-axes-input"),
    Case("ReduceMax", [rand(2, 3, 4)], dict(axes=[-1], keepdims=0), opset=17, id="ReduceMax-17-attr"),
    Case("ReduceMax", [rand(2, 3, 4)], dict(keepdims=0), id="ReduceMax-all-axes"),
    Case("ReduceMax", [rand(2, 3, 4), ints()], dict(noop_with_empty_axes=1), id="ReduceMax-noop"),
    Case("ReduceMin", [rand(2, 3, 4), ints(0, 2)], dict(keepdims=0), id="ReduceMin"),
    Case("ReduceSumSquare", [rand(2, 3, 4), ints(1)], id="ReduceSumSquare"),
    Case("ReduceL2", [rand(2, 3, 4), ints(2)], dict(keepdims=0), id="ReduceL2"),
    Case("ReduceL1", [rand(2, 3, 4), ints(1)], id="ReduceL1"),
    Case("ReduceLogSumExp", [rand(2, 3, 4), ints(0, 2)], dict(keepdims=0), id="ReduceLogSumExp"),
    Case("ReduceLogSum", [pos(2, 3, 4), ints(1)], id="ReduceLogSum"),
    Case("CumSum", [rand(3, 4), np.array(1, I64)], id="CumSum"),
    Case("CumSum", [rand(3, 4), np.array(0, I64)], dict(reverse=1), id="CumSum-reverse"),
    Case("CumSum", [rand(3, 4), np.array(-1, I64)], dict(exclusive=1), id="CumSum-exclusive"),
    Case("CumSum", [rand(3, 4), np.array(1, I64)], dict(exclusive=1, reverse=1), id="CumSum-exclusive-reverse"),
    # Unary activations (random inputs avoid the kinks)
    Case("Relu", [rand(3, 4)]),
    Case("LeakyRelu", [rand(3, 4)], dict(alpha=0.1)),
    Case("PRelu", [rand(2, 3, 4), rand(3, 1, seed=1)], const=(1,), id="PRelu"),
    Case("PRelu", [rand(2, 3, 4), rand(4, seed=1)], id="PRelu-slope-wrt"),
    Case("Clip", [rand(3, 4), floats(-0.5), floats(0.4)], const=(1, 2), id="Clip-min-max"),
    Case("Clip", [rand(3, 4), None, floats(0.3)], const=(2,), id="Clip-max-only"),
    Case("Clip", [rand(3, 4)], id="Clip-no-bounds"),
    Case("Clip", [rand(3, 4), floats(-0.45), floats(0.35)], id="Clip-tensor-bounds-wrt"),
    Case("Clip", [rand(3, 4), None, floats(0.35)], id="Clip-max-wrt"),
    Case("Sigmoid", [rand(3, 4)]),
    Case("HardSigmoid", [rand(3, 4, low=-4, high=4)], dict(alpha=0.3, beta=0.4)),
    Case("HardSwish", [rand(3, 5, low=-5, high=5)]),
    Case("Tanh", [rand(3, 4)]),
    Case("Erf", [rand(3, 4)]),
    Case("Gelu", [rand(3, 4, low=-3, high=3)], opset=20, id="Gelu-erf"),
    Case("Gelu", [rand(3, 4, low=-3, high=3)], dict(approximate="tanh"), opset=20, id="Gelu-tanh"),
    Case("Softplus", [rand(3, 4)]),
    Case("Elu", [rand(3, 4, low=-2, high=2)], dict(alpha=0.7)),
    Case("Selu", [rand(3, 4, low=-2, high=2)]),
    Case("Selu", [rand(3, 4, low=-2, high=2)], dict(alpha=1.2, gamma=0.8), id="Selu-alpha-gamma"),
    Case("Celu", [rand(3, 4, low=-2, high=2)], dict(alpha=1.5)),
    Case("Mish", [rand(3, 4, low=-3, high=3)]),
    Case("Swish", [rand(3, 4, low=-3, high=3)], dict(alpha=0.7), opset=24, id="Swish-24"),
    Case("Softsign", [rand(3, 4, low=-3, high=3)]),
    Case("ThresholdedRelu", [rand(3, 4)], dict(alpha=0.3)),
    Case("Shrink", [rand(3, 4)], dict(lambd=0.3, bias=0.1)),
    *[Case(op, [rand(3, 4, low=-0.9, high=0.9)]) for op in ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Atanh")],
    *[Case(op, [rand(3, 4, low=-2, high=2)]) for op in ("Sinh", "Cosh", "Asinh")],
    Case("Acosh", [rand(3, 4, low=1.2, high=3)]),
    Case("Exp", [rand(3, 4)]),
    Case("Log", [pos(3, 4)]),
    Case("Sqrt", [pos(3, 4)]),
    Case("Pow", [pos(3, 4), floats(2.5)], const=(1,), id="Pow-const-exponent"),
    Case("Pow", [rand(3, 4), np.array(3, I64)], id="Pow-int-exponent"),
    Case("Pow", [pos(3, 4), rand(4, seed=1)], id="Pow-tensor-exponent"),
    Case("Neg", [rand(3, 4)]),
    Case("Abs", [rand(3, 4)]),
    Case("Reciprocal", [pos(3, 4)]),
    Case("Softmax", [rand(2, 3, 4)], id="Softmax"),
    Case("Softmax", [rand(2, 3, 4)], dict(axis=1), id="Softmax-axis1"),
    Case("LogSoftmax", [rand(2, 3, 4)], dict(axis=0), id="LogSoftmax-axis0"),
    Case("Softmax", [rand(2, 3, 4)], dict(axis=1), opset=11, reference="ort", id="Softmax-11-flattening"),
    # Broadcasting elementwise
    Case("Add", [rand(2, 3, 4), rand(3, 1, seed=1)], id="Add-broadcast"),
    Case("Sub", [rand(3, 1), rand(2, 1, 4, seed=1)], id="Sub-broadcast-both"),
    Case("Mul", [rand(2, 3, 4), rand(4, seed=1)], id="Mul-broadcast"),
    Case("Div", [rand(2, 3), rand(2, 3, seed=1, low=0.5, high=2)]),
    Case("Div", [rand(2, 3), pos(3, 1, 1, seed=1)], id="Div-broadcast"),
    Case("Sum", [rand(2, 3), rand(3, seed=1), rand(2, 1, seed=2)], id="Sum-3"),
    Case("Mean", [rand(2, 3), rand(3, seed=1)], id="Mean"),
    Case("Max", [rand(2, 3), rand(3, seed=1)], id="Max-broadcast"),
    Case("Min", [rand(2, 3), rand(2, 3, seed=1), rand(1, 3, seed=2)], id="Min-3"),
    Case("Where", [rand(2, 3) > 0, rand(2, 3, seed=1), rand(3, seed=2)], id="Where-broadcast"),
    Case("Where", [rand(3, 1) > 0, floats(0.5), rand(2, 3, 4, seed=2)], const=(1,), id="Where-cond-broadcast"),
    # Data movement
    Case("Reshape", [rand(2, 3, 4), ints(4, -1)]),
    Case("Flatten", [rand(2, 3, 2, 2)], dict(axis=2)),
    Case("Transpose", [rand(2, 3, 4)], dict(perm=[1, 2, 0])),
    Case("Transpose", [rand(2, 3, 4)], id="Transpose-default"),
    Case("Squeeze", [rand(2, 1, 3, 1), ints(-1)], id="Squeeze-axes"),
    Case("Squeeze", [rand(2, 1, 3, 1)], id="Squeeze-all"),
    Case("Unsqueeze", [rand(2, 3), ints(0, 3)]),
    Case("Concat", [rand(2, 3), rand(2, 1, seed=1), rand(2, 2, seed=2)], dict(axis=1), id="Concat-3"),
    Case("Concat", [rand(2, 3, 2), rand(2, 3, 1, seed=1)], dict(axis=-1), id="Concat-negative-axis"),
    Case("Concat", [rand(1, 3), rand(2, 3, seed=1)], dict(axis=-2), id="Concat-axis-minus2"),
    Case("Split", [rand(5, 3), ints(2, 3)], outputs=2, id="Split-input"),
    Case("Split", [rand(2, 5)], dict(axis=1, num_outputs=3), outputs=3, id="Split-num-outputs-18"),
    Case("Split", [rand(4, 3)], outputs=2, opset=13, id="Split-13-even"),
    Case("Slice", [rand(4, 6), ints(5, 1), ints(-10, 6), ints(1, 0), ints(-2, 2)], id="Slice-steps"),
    Case("Slice", [rand(4, 5), ints(1, -4), ints(3, 100)], id="Slice-axes-omitted"),
    Case("Slice", [rand(4, 5), ints(-1), ints(-100), ints(-1), ints(-3)], id="Slice-negative-step"),
    Case("Pad", [rand(4, 3), ints(1, 0, 2, 1)], dict(mode="reflect"), id="Pad-reflect"),
    Case("Pad", [rand(2, 3), ints(1, 0, 2, 1), floats(0.5)], const=(2,), id="Pad-constant"),
    Case("Pad", [rand(2, 3), ints(1, -1, 0, 2)], reference="ort", id="Pad-negative"),
    Case("Pad", [rand(3, 3), ints(2, 0, 1, 1)], dict(mode="edge"), id="Pad-edge"),
    Case("Pad", [rand(2, 3, 4), ints(1, 2), None, ints(-1)], id="Pad-axes-input"),
    Case("Pad", [rand(2, 3, 4), ints(1, 0, 1, 2), None, ints(0, 2)], dict(mode="edge"), id="Pad-edge-axes"),
    Case("Pad", [rand(3, 4), ints(1, 2, 2, 1)], dict(mode="wrap"), opset=19, id="Pad-wrap-19"),
    Case("Gather", [rand(4, 3), ints(2, 0, 2)], id="Gather-repeat"),
    Case("Gather", [rand(4, 3), np.array(1, I64)], id="Gather-scalar-index"),
    Case("Gather", [rand(4, 3), ints(-1, 0)], dict(axis=1), id="Gather-negative-axis1"),
    Case("Gather", [rand(2, 4, 3), np.array([[0, 3], [3, 3]], I64)], dict(axis=1), id="Gather-2d-indices"),
    Case("GatherElements", [rand(3, 4), np.array([[0, 1], [3, 3], [2, -1]], I64)], dict(axis=1)),
    Case("ScatterND", [rand(4, 3), ints(3, 1).reshape(2, 1), rand(2, 3, seed=1)], id="ScatterND"),
    Case("ScatterND", [rand(2, 3), np.array([[0, 1], [1, 2]], I64), rand(2, seed=1)], id="ScatterND-elements"),
    Case("ScatterND", [rand(4, 3), ints(3, 1).reshape(2, 1), rand(2, 3, seed=1)], dict(reduction="add"), opset=16,
         id="ScatterND-add"),
    Case("Expand", [rand(3, 1), ints(2, 3, 4)]),
    Case("Tile", [rand(2, 3), ints(2, 2)]),
    Case("GatherND", [rand(2, 3, 4), np.array([[0, 1], [1, 2], [0, 1]], I64)], id="GatherND-repeat"),
    Case("GatherND", [rand(2, 3, 4), np.array([[2], [0]], I64)], dict(batch_dims=1), id="GatherND-batch-dims"),
    Case("Compress", [rand(3, 4), np.array([True, False, True])], dict(axis=0), id="Compress-axis"),
    Case("Compress", [rand(2, 3), np.array([False, True, True, False, True])], id="Compress-flat"),
    Case("ReverseSequence", [rand(4, 2, 3), ints(4, 2)], dict(batch_axis=1, time_axis=0)),
    Case("CenterCropPad", [rand(3, 5), ints(4, 2)], id="CenterCropPad"),
    Case("CenterCropPad", [rand(2, 5, 3), ints(2, 6)], dict(axes=[1, -1]), id="CenterCropPad-axes"),
    Case("ScatterElements", [rand(3, 4), np.array([[1, 0], [3, 2]], I64), rand(2, 2, seed=1)], dict(axis=1),
         id="ScatterElements"),
    Case("ScatterElements", [rand(3, 4), np.array([[1, 1], [2, 0]], I64), rand(2, 2, seed=1)],
         dict(reduction="add"), id="ScatterElements-add"),
    Case("TopK", [rand(3, 5), ints(2)], outputs=2, id="TopK"),
    Case("TopK", [rand(4, 3), ints(3)], dict(axis=0, largest=0), outputs=2, id="TopK-smallest-axis0"),
    Case("Trilu", [rand(4, 5)], id="Trilu"),
    Case("Trilu", [rand(2, 4, 5), np.array(1, I64)], dict(upper=0), id="Trilu-lower-k"),
    Case("CastLike", [grid(3, 4), np.zeros(1, np.float32)], const=(1,), eps=2**-10, id="CastLike-to-float"),
    Case("Identity", [rand(3, 4)]),
    Case("Dropout", [rand(3, 4)]),
    Case("Cast", [grid(3, 4)], dict(to=F32), eps=2**-10, id="Cast-to-float"),
    Case("Cast", [rand(3, 4)], dict(to=F64), id="Cast-to-double"),
    Case("DepthToSpace", [rand(1, 8, 2, 3)], dict(blocksize=2), id="DepthToSpace-DCR"),
    Case("DepthToSpace", [rand(1, 8, 2, 3)], dict(blocksize=2, mode="CRD"), id="DepthToSpace-CRD"),
    Case("SpaceToDepth", [rand(1, 2, 4, 6)], dict(blocksize=2)),
    # Resize: probed interpolation matrices, one per resized axis
    Case("Resize", [rand(1, 2, 3, 4), None, scales(1, 1, 2, 2)], dict(mode="nearest"), const=(2,),
         id="Resize-nearest-default"),
    *[
        Case("Resize", [rand(1, 1, 3, 4), None, scales(1, 1, 1.7, 2.5)],
             dict(mode="nearest", nearest_mode=m, coordinate_transformation_mode="asymmetric"), const=(2,),
             id=f"Resize-nearest-{m}")
        for m in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
    ],
    *[
        Case("Resize", [rand(1, 2, 3, 4), None, scales(1, 1, 2, 1.5)],
             dict(mode="linear", coordinate_transformation_mode=c), const=(2,), id=f"Resize-linear-{c}")
        for c in ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel")
    ],
    Case("Resize", [rand(1, 1, 4, 4), None, scales(1, 1, 1.5, 2.5)], dict(mode="cubic"), const=(2,), id="Resize-cubic"),
    Case("Resize", [rand(1, 1, 4, 5), None, scales(1, 1, 2, 2)],
         dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1, coordinate_transformation_mode="align_corners"),
         const=(2,), id="Resize-cubic-exclude-outside"),
    Case("Resize", [rand(1, 2, 3, 4), None, None, ints(1, 2, 5, 7)], dict(mode="linear"), id="Resize-sizes"),
    Case("Resize", [rand(1, 2, 6, 7), None, scales(1, 1, 0.5, 0.6)], dict(mode="linear"), const=(2,),
         id="Resize-downscale"),
    Case("Resize", [rand(1, 2, 7, 7), None, None, ints(3, 4)], dict(mode="linear", axes=[3, 2]), id="Resize-axes-18"),
    Case("Resize", [rand(1, 2, 3, 4), floats(0, 0, 0.2, 0.1, 1, 1, 0.8, 0.9), scales(1, 1, 2, 1.5)],
         dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"), const=(1, 2),
         id="Resize-tf-crop-and-resize"),
    Case("Resize", [rand(1, 2, 3, 4), None, scales(1, 1, 2, 2.5)],
         dict(mode="linear", coordinate_transformation_mode="half_pixel_symmetric"), const=(2,), opset=19,
         id="Resize-half-pixel-symmetric-19"),
    Case("Resize", [rand(1, 2, 3, 4), floats(), scales(1, 1, 2, 2)], dict(mode="nearest"), const=(1, 2), opset=11,
         id="Resize-11"),
    Case("Resize", [rand(1, 2, 3, 4), floats(), scales(), ints(1, 2, 6, 5)], dict(mode="linear"), const=(1, 2),
         opset=11, id="Resize-11-sizes"),
    Case("Resize", [rand(1, 2, 6, 7), None, scales(0.5, 0.6)], dict(mode="linear", antialias=1, axes=[2, 3]),
         const=(2,), id="Resize-antialias-linear"),
    Case("Resize", [rand(1, 1, 6, 7), None, scales(1, 1, 0.5, 0.6)], dict(mode="cubic", antialias=1), const=(2,),
         id="Resize-antialias-cubic"),
    Case("Resize", [rand(1, 3, 4, 2), None, scales(1, 1.5, 2, 1)], dict(mode="linear"), const=(2,),
         id="Resize-nhwc-linear"),
    Case("Resize", [rand(1, 2, 3, 2), None, scales(1, 2, 1, 1.5)], dict(mode="nearest"), const=(2,),
         id="Resize-channels-nearest"),
    # input sizes unknown to shape inference: the probes are built at run time
    Case("Resize", [rand(1, 2, 3, 4), None, scales(1, 1, 2, 1.5)], dict(mode="linear"), const=(2,), symbolic=True,
         id="Resize-symbolic-scales"),
    Case("Resize", [rand(1, 2, 3, 4), None, None, ints(1, 2, 5, 2)], dict(mode="cubic"), symbolic=True,
         id="Resize-symbolic-sizes"),
    Case("Resize", [rand(1, 2, 3, 4), None, None, ints(4, 7)], dict(mode="nearest", axes=[2, 3]), symbolic=True,
         id="Resize-symbolic-axes"),
    # tf_half_pixel_for_nn (opset 11-12 only): onnx's reference lacks it; Resize is linear in X, so eps can be large
    *[
        Case("Resize", [rand(1, 2, 3, 4), floats(), scales(1, 1, 2, 1.5)],
             dict(mode=m, coordinate_transformation_mode="tf_half_pixel_for_nn"), const=(1, 2), opset=11,
             reference="ort", eps=0.5, id=f"Resize-11-tf-half-pixel-for-nn-{m}")
        for m in ("nearest", "linear")
    ],
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rule_matches_finite_differences(case):
    check(case)


def test_every_rule_has_a_row():
    straight_through = {"QuantizeLinear", "DequantizeLinear"}  # the QDQ table below: finite differences do not apply
    assert set(RULES) - {c.op for c in CASES} - straight_through == set()


def _graph_model(nodes, x_shape, y_shape, dtype):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    x, y = helper.make_tensor_value_info("x", elem, x_shape), helper.make_tensor_value_info("y", elem, y_shape)
    graph = helper.make_graph(nodes, "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def test_op_without_rule_names_op_and_node():
    assert "Det" not in RULES
    model = _graph_model([helper.make_node("Det", ["x"], ["y"], name="the_det")], [2, 3, 3], [2], np.float32)
    with pytest.raises(onnxcam.UnsupportedOpError, match="'Det'.*'the_det'"):
        onnxcam.gradient_model(model, wrt="x", output="y")


def test_integer_edge_stops_the_gradient():
    """ArgMax (no rule) only feeds Gather's indices: the gradient reaches x through Gather's data alone."""
    assert "ArgMax" not in RULES
    nodes = [
        helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=0),
        helper.make_node("Gather", ["x", "i"], ["g"], axis=1),
        helper.make_node("Mul", ["g", "x"], ["y"]),
    ]
    check_model(lambda dtype: _graph_model(nodes, [3, 3], [3, 3], dtype), {"x": rand(3, 3)}, "ArgMax-Gather")


def test_split_output_without_gradient_gets_zeros():
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
        helper.make_node("Concat", ["a", "c"], ["y"], axis=1),
    ]
    check_model(lambda dtype: _graph_model(nodes, [2, 6], [2, 4], dtype), {"x": rand(2, 6)}, "Split-unused-output")


def test_resize_of_the_batch_axis_is_refused():
    nodes = [helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", mode="nearest")]
    model = _graph_model(nodes, [1, 2, 3, 3], [2, 2, 3, 3], np.float32)
    model.graph.initializer.append(numpy_helper.from_array(scales(2, 1, 1, 1), "s"))
    with pytest.raises(onnxcam.UnsupportedOpError, match="'Resize'.*'up'.*batch"):
        onnxcam.gradient_model(model, wrt="x", output="y")


@pytest.mark.parametrize(("op", "shape", "eps"), [("Relu", [2, 8, 3, 3], 2**-10), ("GlobalAveragePool", [2, 8, 3, 4], 0.5)])
def test_blocked_layout_forms_match_finite_differences(op, shape, eps):
    """float32 N·C·H·W tensors take the Conv-based forms of these rules (the table runs float64, which keeps the
    plain ones). Casts put the node in float32; inputs on a 1/1024 grid, at least one step from Relu's kink, and
    power-of-two steps keep the inputs exact (the linear pool takes a large one, above its float32 rounding)."""
    x = grid(*shape)
    x[np.abs(x) < 2**-10] = 0.5
    out = [shape[0], shape[1], 1, 1] if op == "GlobalAveragePool" else shape
    nodes = [helper.make_node("Cast", ["x"], ["x32"], to=F32), helper.make_node(op, ["x32"], ["y32"])]

    def build(dtype):
        to = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        return _graph_model([*nodes, helper.make_node("Cast", ["y32"], ["y"], to=to)], shape, out, dtype)

    ops = {n.op_type for n in onnxcam.gradient_model(build(np.float64), wrt="x", output="y").graph.node}
    assert "Conv" in ops and not ops & {"Where", "Expand"}, ops  # the blocked form, not the plain one
    check_model(build, {"x": x}, f"{op}-float32-NCHW", eps=eps)


def _small_cnn(dtype, rounded: bool = False):
    """Conv, Relu, MaxPool (ScatterElements with reduction "add" in its rule), strided Conv (ConvTranspose), Swish,
    Resize, AveragePool, GlobalAveragePool, Gemm; weights on the fp16 grid, so every dtype holds the same values.
    `rounded`: each node's output passes through fp16 and back, as an fp16 model's activations do."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        value = rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape).astype(np.float16).astype(dtype)
        return numpy_helper.from_array(value, name)

    inits = [weight("w1", 8, 3, 3, 3), weight("w2", 8, 8, 3, 3), weight("w3", 10, 8), weight("b3", 10),
             numpy_helper.from_array(scales(1, 1, 2, 2), "up")]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["s2"]),
        helper.make_node("Mul", ["c2", "s2"], ["a2"]),
        helper.make_node("Resize", ["a2", "", "up"], ["u2"], mode="linear"),
        helper.make_node("AveragePool", ["u2"], ["v2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["v2"], ["g2"]),
        helper.make_node("Flatten", ["g2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    if rounded:
        for node in nodes:
            out = node.output[0]
            node.output[0] = out + "_exact"
        nodes = [m for node in nodes for m in (
            node,
            helper.make_node("Cast", [node.output[0]], [node.output[0] + "_half"], to=TensorProto.FLOAT16),
            helper.make_node("Cast", [node.output[0] + "_half"], [node.output[0][:-6]], to=F32),
        )]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", elem, ["n", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", elem, ["n", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _input_gradient(model, x, dtype):
    session = ort.InferenceSession(onnxcam.gradient_model(model, wrt="x", output="y").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    seed = np.zeros((len(x), 10), dtype)
    seed[:, 3] = 1
    return session.run([onnxcam.grad_name("x")], {"x": x.astype(dtype), "grad_seed": seed})[0]


def test_fp16_model_gradient():
    """∂logit/∂input of an fp16 model comes out in fp16, though ONNX Runtime's CPU has no fp16 ScatterElements with
    reduction "add" (the backward sweep computes in float32). Two oracles, float32 gradient models of the same
    weights: (1) every activation rounded to fp16 as the fp16 forward rounds it, so the Relu and MaxPool decisions are
    the same: only the fp16 rounding of the result differs, ≤ 2⁻¹¹ of each element (4 ulps allowed); (2) the plain
    float32 model: activations differ by fp16 rounding (2⁻¹¹ each, ~10 layers: ~1e-3 relative), and a Relu or pool
    decision that flips within that rounding moves one element's gradient: a cosine of 0.999, not an elementwise bound."""
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 16, 16)).astype(np.float16)
    half = _input_gradient(_small_cnn(np.float16), x, np.float16)
    assert half.dtype == np.float16
    same_decisions = _input_gradient(_small_cnn(np.float32, rounded=True), x, np.float32)
    plain = _input_gradient(_small_cnn(np.float32), x, np.float32)
    half = half.astype(np.float32)
    assert np.abs(half - same_decisions).max() <= 2**-9 * np.abs(same_decisions).max()
    assert (half * plain).sum() / np.linalg.norm(half) / np.linalg.norm(plain) >= 0.999


def test_bf16_tensors_on_the_path():
    """A bf16 stretch (ONNX Runtime's CPU has Cast, Transpose and Reshape for bf16, no arithmetic): the backward sweep
    reads it in float32, so ∂y/∂x equals the gradient of the same graph without the bf16 casts (they round values in
    the forward pass, not the decisions taken before them), and a bf16 tensor's gradient output is declared bf16."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Cast", ["p"], ["p16"], to=TensorProto.BFLOAT16),
        helper.make_node("Transpose", ["p16"], ["t16"], perm=[0, 2, 3, 1]),
        helper.make_node("Cast", ["t16"], ["t"], to=F32),
        helper.make_node("ReduceMean", ["t", "axes"], ["y"], keepdims=0),
    ]
    inits = [numpy_helper.from_array(rand(3, 2, 3, 3).astype(np.float32), "w"), numpy_helper.from_array(ints(1, 2), "axes")]
    plain = [nodes[0], nodes[1], helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 3, 1]), nodes[-1]]
    x, seed = rand(2, 2, 4, 4).astype(np.float32), rand(2, 3, seed=1).astype(np.float32)
    got = []
    for graph_nodes, wrt in [(nodes, ["x", "p16"]), (plain, ["x"])]:
        graph = helper.make_graph(graph_nodes, "g", [helper.make_tensor_value_info("x", F32, [2, 2, 4, 4])],
                                  [helper.make_tensor_value_info("y", F32, [2, 3])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        grads = onnxcam.gradient_model(model, wrt=wrt, output="y")
        types = {o.name: o.type.tensor_type.elem_type for o in grads.graph.output}
        assert types[onnxcam.grad_name(wrt[-1])] == (TensorProto.BFLOAT16 if "p16" in wrt else F32)
        session = ort.InferenceSession(grads.SerializeToString(), providers=["CPUExecutionProvider"])
        got.append(session.run([onnxcam.grad_name("x")], {"x": x, "grad_seed": seed})[0])
    assert np.abs(got[0] - got[1]).max() <= 1e-6 * np.abs(got[1]).max()


# QDQ: (id, x, scale, zero point or None, QuantizeLinear/DequantizeLinear attributes, opset)
QDQ = [
    ("int8-per-tensor", rand(3, 4, low=-3, high=3), 0.02, np.array(3, np.int8), {}, 18),
    ("uint8-per-tensor", rand(3, 4, low=-8, high=8), 0.05, np.array(128, np.uint8), {}, 18),
    ("uint8-default-no-zero-point", rand(3, 4, low=-2, high=4), 0.01, None, {}, 18),
    ("int8-per-axis", rand(2, 3, 2, 2, low=-2, high=2), np.array([0.004, 0.01, 0.02]), np.array([0, -5, 10], np.int8),
     {}, 18),
    ("uint8-per-axis-last", rand(2, 3, 4, low=-2, high=2), np.array([0.002, 0.005, 0.01, 0.02]),
     np.array([0, 50, 128, 255], np.uint8), dict(axis=-1), 18),
    ("int16-21", rand(3, 4, low=-2, high=2), 5e-5, np.array(1000, np.int16), {}, 21),
    ("float16-scale", rand(3, 4, low=-3, high=3), np.float16(0.02), np.array(-20, np.int8), {}, 19),
]


def _qdq_gradient(x, scale, zero, attrs, opset, consumers=1):
    """∂ sum(seed · Σ_k DQ_k(Q(x))) / ∂x from onnxcam's gradient model, for k = 1..consumers DequantizeLinear nodes."""
    scale = np.asarray(scale, np.float32) if np.asarray(scale).dtype == np.float64 else np.asarray(scale)
    elem = helper.np_dtype_to_tensor_dtype(scale.dtype)
    names = ["x", "scale", "zero"] if zero is not None else ["x", "scale"]
    dq = [helper.make_node("DequantizeLinear", ["q", *names[1:]], [f"y{k}"], **attrs) for k in range(consumers)]
    total = helper.make_node("Sum", [n.output[0] for n in dq], ["y"])
    nodes = [helper.make_node("QuantizeLinear", names, ["q"], **attrs), *dq, total]
    inits = [numpy_helper.from_array(scale, "scale")] + ([numpy_helper.from_array(zero, "zero")] if zero is not None else [])
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", elem, x.shape)],
                              [helper.make_tensor_value_info("y", elem, x.shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 21 else 10
    session = ort.InferenceSession(onnxcam.gradient_model(model, wrt="x", output="y").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    seed = rand(*x.shape, seed=5).astype(scale.dtype)
    return session.run([onnxcam.grad_name("x")], {"x": x.astype(scale.dtype), "grad_seed": seed})[0], seed


@pytest.mark.parametrize(("label", "x", "scale", "zero", "attrs", "opset"), QDQ, ids=[q[0] for q in QDQ])
def test_quantize_dequantize_straight_through(label, x, scale, zero, attrs, opset):
    """Finite differences of DQ(Q(x)) are 0 between quantization steps and unbounded across them, so the rules are
    checked against the convention's definition instead: d DQ(Q(x))/dx = 1 inside [scale·(qmin − zp),
    scale·(qmax − zp)] and 0 outside, per element (scale and zero point along `axis` when per-axis). The inputs span
    both sides of that range; points within a quarter step of its ends move a quarter step out."""
    info = np.iinfo(zero.dtype if zero is not None else np.uint8)
    axis = attrs.get("axis", 1) % x.ndim
    along = [-1 if a == axis else 1 for a in range(x.ndim)] if np.ndim(scale) else []
    s = np.asarray(scale, np.float64).reshape(along)
    z = np.asarray(zero if zero is not None else 0, np.float64).reshape(along)
    t = x / s + z  # position in quantized units
    for edge in (info.min, info.max):
        near = np.abs(t - edge) < 0.25
        t[near] = edge + np.sign(t[near] - edge + 1e-9) * 0.25
    x = (t - z) * s
    inside = (t >= info.min) & (t <= info.max)
    assert inside.any() and not inside.all()
    got, seed = _qdq_gradient(x, scale, zero, attrs, opset)
    assert got.dtype == seed.dtype
    rtol = 1e-6 if seed.dtype == np.float32 else 1e-3  # (seed / scale) · scale rounds
    np.testing.assert_allclose(got, np.where(inside, seed, 0), rtol=rtol, atol=0)


def test_quantized_tensor_with_two_dequantize_consumers():
    """The integer tensor's gradient is the sum of both DequantizeLinear contributions."""
    x = np.array([[-3.0, -0.51, 0.2, 1.7, 2.4, 3.0]])
    got, seed = _qdq_gradient(x, 0.02, np.array(3, np.int8), {}, 18, consumers=2)
    inside = (x / 0.02 + 3 >= -128) & (x / 0.02 + 3 <= 127)
    np.testing.assert_allclose(got, np.where(inside, 2 * seed, 0), rtol=1e-6)


def test_integer_kernel_on_the_path_names_the_op():
    """QOperator models (integer kernels such as MatMulInteger after QuantizeLinear) get the missing-rule error."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("MatMulInteger", ["q", "w", "z", "z"], ["acc"], name="the_matmul"),
        helper.make_node("Cast", ["acc"], ["y"], to=F32),
    ]
    model = _graph_model(nodes, [2, 3], [2, 2], np.float32)
    model.graph.initializer.extend([numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(7), "z"),
                                    numpy_helper.from_array(np.ones((3, 2), np.uint8), "w")])
    with pytest.raises(onnxcam.UnsupportedOpError, match="'MatMulInteger'.*'the_matmul'"):
        onnxcam.gradient_model(model, wrt="x", output="y")


def test_resize_to_sizes_computed_at_run_time():
    """A segmentation head's upsampling to Concat(Shape(x)[:2], [H, W]) on an input of unknown sizes: shape inference
    still shows N and C unchanged, and the interpolation matrices are probed at run time."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], end=2),
        helper.make_node("Concat", ["shape", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear"),
    ]

    def build(dtype):
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, ["n", 2, "h", "w"])],
                                  [helper.make_tensor_value_info("y", elem, [None] * 4)],
                                  [numpy_helper.from_array(ints(5, 7), "hw")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        return model

    check_model(build, {"x": rand(2, 2, 3, 4)}, "Resize-run-time-sizes")


def test_resize_of_the_batch_by_run_time_sizes_fails_at_run_time():
    """Run-time sizes are assumed to keep the batch; a Reshape to X's shape stops the gradient if they did not."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], end=2),
        helper.make_node("Mul", ["shape", "twice"], ["sizes01"]),
        helper.make_node("Concat", ["sizes01", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, ["n", 2, "h", "w"])],
                              [helper.make_tensor_value_info("y", F32, [None] * 4)],
                              [numpy_helper.from_array(ints(2, 1), "twice"), numpy_helper.from_array(ints(3, 3), "hw")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    session = ort.InferenceSession(onnxcam.gradient_model(model, wrt="x", output="y").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = rand(1, 2, 3, 3).astype(np.float32)
    with pytest.raises(Exception, match="Reshape"):
        session.run(None, {"x": x, "grad_seed": np.ones((2, 2, 3, 3), np.float32)})
