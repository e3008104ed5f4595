"""The registry of gradient rules: one short function per op type, grouped by family in the modules below."""

from __future__ import annotations

from collections.abc import Callable

RULES: dict[str, Callable] = {}


def rule(*op_types: str):
    """Register f(b: Builder, node: Node, dy: list[str | None]) -> list[str | None] (one entry per input)."""

    def register(f):
        for op in op_types:
            RULES[op] = f
        return f

    return register


from . import activation, elementwise, linear, normalization, pooling, quantize, reduce, resize, shape  # noqa: E402,F401
