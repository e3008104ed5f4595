"""docs/structure.md and docs/cgv.md are what their tools measure: each tool's measurement (onnxcam alone, on the
committed models) is run again and the doc it writes must match the committed doc — the same text, and every number
within one unit of its last printed digit (another CPU may round the last digit the other way)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
NUMBER = re.compile(r"\d+\.\d+|\d+")


def split(text: str) -> tuple[str, list[str]]:
    return NUMBER.sub("#", text), NUMBER.findall(text)


@pytest.mark.parametrize("tool", ["structured_gradients", "side_channel"])
def test_doc_is_regenerated_by_its_tool(tool):
    module = __import__(tool)
    words, numbers = split(module.doc(module.measure()))
    doc_words, doc_numbers = split(module.DOC.read_text())
    assert words == doc_words
    unit = np.array([10.0 ** -len(n.partition(".")[2]) for n in doc_numbers])
    assert np.all(np.abs(np.float64(numbers) - np.float64(doc_numbers)) <= unit * 1.01), tool
