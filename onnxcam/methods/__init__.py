"""Explanation methods: each reads like its formula in reference/methods.md; the registry maps names to them."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from ..errors import OnnxcamError

METHODS: dict[str, Callable] = {}


def method(name: str):
    def register(f):
        METHODS[name] = f
        return f

    return register


def run_method(ex, name: str, x, targets, layer, **options):
    f = METHODS.get(name)
    if f is None:
        close = difflib.get_close_matches(name, METHODS, n=2)
        hint = f"did you mean {' or '.join(close)}?" if close else f"choose one of {', '.join(sorted(METHODS))}"
        raise OnnxcamError(f"unknown method {name!r}; {hint}")
    allowed = [p for p in inspect.signature(f).parameters if p not in ("ex", "x", "targets", "layer")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise OnnxcamError(f"method {name!r} has no option {unknown[0]!r}; its options are {', '.join(allowed)}")
    return f(ex, x, targets, layer, **options)


from . import attribution, baselines, cam, igos, path, scorecam, smooth  # noqa: E402,F401
