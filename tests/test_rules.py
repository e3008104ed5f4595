"""Every gradient rule against float64 finite differences: one table row per op × attribute variant."""

import numpy as np
import pytest
from opcheck import Case, check, rand

I64 = np.int64
CASES = [
    Case("Relu", [rand(3, 4)]),
    Case("Sigmoid", [rand(3, 4)]),
    Case("Add", [rand(2, 3, 4), rand(3, 1, seed=1)], id="Add-broadcast"),
    Case("Mul", [rand(2, 3, 4), rand(4, seed=1)], id="Mul-broadcast"),
    Case("Div", [rand(2, 3), rand(2, 3, seed=1, low=0.5, high=2)]),
    Case("Conv", [rand(2, 4, 7, 6), rand(6, 2, 3, 3, seed=1)], dict(group=2, strides=[2, 2], pads=[1, 0, 0, 1]), const=(1,), id="Conv-group-stride-asym"),
    Case("MaxPool", [rand(1, 2, 7, 7)], dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1), id="MaxPool-ceil-overlap"),
    Case("Slice", [rand(4, 6), np.array([5, 1], I64), np.array([-10, 6], I64), np.array([1, 0], I64), np.array([-2, 2], I64)], id="Slice-steps"),
    Case("Pad", [rand(4, 3), np.array([1, 0, 2, 1], I64)], dict(mode="reflect"), id="Pad-reflect"),
    Case("Pad", [rand(2, 3), np.array([1, 0, 2, 1], I64), np.array(0.5)], const=(2,), id="Pad-constant"),
    Case("Gather", [rand(4, 3), np.array([[0, 2], [2, 3]], I64)], dict(axis=0), id="Gather-repeat"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rule_matches_finite_differences(case):
    check(case)
