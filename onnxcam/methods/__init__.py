"""Explanation methods, each defined once (methods.definition); the registry maps names to definitions."""

from __future__ import annotations

import difflib

from ..errors import UsageError
from .definition import EngineOnly, Gradient
from .options import Options

METHODS: dict[str, Gradient | EngineOnly] = {}


def register(definition: Gradient | EngineOnly) -> None:
    METHODS[definition.name] = definition


def get(name: str) -> Gradient | EngineOnly:
    """The definition of a method; an unknown name is a usage error with a did-you-mean."""
    definition = METHODS.get(name) if isinstance(name, str) else None
    if definition is None:
        close = difflib.get_close_matches(str(name), METHODS, n=2)
        hint = f"did you mean {' or '.join(close)}?" if close else f"choose one of {', '.join(sorted(METHODS))}"
        raise UsageError(f"unknown method {name!r}; {hint}")
    return definition


def options(name: str, given: dict | None = None) -> Options:
    """A method's options from keyword arguments, checked (UsageError, exit code 2, for any bad one)."""
    return get(name).options.of(name, dict(given or {}))


def exportable() -> tuple[str, ...]:
    return tuple(name for name, d in METHODS.items() if isinstance(d, Gradient))


from . import ablation, attribution, baselines, cam, eigencam, igos, path, scorecam, smooth  # noqa: E402,F401
