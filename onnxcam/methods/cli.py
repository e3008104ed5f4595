"""Command-line options generated from the methods' options dataclasses: one schema, `--help` lists them all."""

from __future__ import annotations

import dataclasses
from collections import Counter

import click

from ..errors import UsageError
from . import METHODS


def _specs(names) -> dict[str, list[tuple[str, object, object]]]:
    """option name → [(method, spec, default)] over the given methods, for the options a command line can carry."""
    found: dict[str, list] = {}
    for method in names:
        for f in dataclasses.fields(METHODS[method].options):
            spec = f.metadata.get("spec")
            if spec is not None and spec.cli:
                found.setdefault(f.name, []).append((method, spec, f.default))
    return found


def _baseline(text: str):
    if text == "black":
        return text
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"expected a number or 'black', got {text[:40]!r}") from None


def _type(specs):
    """The click type: a range when every method agrees on it (click's message then names the flag), else the plain
    type, and the dataclass checks the value."""
    kinds = {spec.kind for _, spec, _ in specs}
    kind = kinds.pop() if len(kinds) == 1 else "float"
    ranges = {(spec.low, spec.high, spec.strict) for _, spec, _ in specs}
    low, high, strict = ranges.pop() if len(ranges) == 1 else (None, None, False)
    if kind == "int":
        return click.IntRange(low, high) if low is not None else int
    if kind == "float":
        return click.FloatRange(low, high, min_open=strict) if low is not None else float
    if kind == "choice":
        return click.Choice(list(dict.fromkeys(c for _, spec, _ in specs for c in spec.choices)))
    return click.UNPROCESSED


def _help(specs) -> str:
    """Each distinct meaning once: the text, the methods, the most common default and the exceptions."""
    by_help: dict[str, list[tuple[str, object]]] = {}
    for method, spec, default in specs:
        by_help.setdefault(spec.help, []).append((method, default))
    parts = []
    for text, uses in by_help.items():
        common = Counter(str(d) for _, d in uses).most_common(1)[0][0]
        others = ", ".join(f"{m}: {d}" for m, d in uses if str(d) != common)
        parts.append(f"{text} [{', '.join(m for m, _ in uses)}; default {common}{f' ({others})' if others else ''}]")
    return " ".join(parts)


def method_options(names, skip: tuple[str, ...] = ()):
    """Decorate a command with one option per method option (kwargs named `opt_<name>`); `skip` leaves out names
    the command uses for its own options."""
    specs = {name: s for name, s in _specs(names).items() if name not in skip}

    def decorate(f):
        for name, uses in sorted(specs.items(), reverse=True):
            flag = "--" + (uses[0][1].flag or name.replace("_", "-"))
            kind = uses[0][1].kind
            if kind == "flag":
                option = click.option(f"{flag}/--no-{flag[2:]}", f"opt_{name}", default=None,
                                      help=_help(uses))
            elif kind == "baseline":
                option = click.option(flag, f"opt_{name}", type=click.UNPROCESSED, callback=lambda c, p, v: None
                                      if v is None else _baseline(v), default=None, metavar="NUMBER|black",
                                      help=_help(uses))
            else:
                option = click.option(flag, f"opt_{name}", type=_type(uses), default=None, help=_help(uses))
            f = option(f)
        return f

    return decorate


def _flag(name: str) -> str:
    spec = next((s for _, s, _ in _specs(METHODS).get(name, [])), None)
    return (spec.flag if spec else None) or name.replace("_", "-")


def given(kwargs: dict) -> dict:
    """The method options set on the command line (pops them from the command's kwargs)."""
    popped = {k[4:]: kwargs.pop(k) for k in [k for k in kwargs if k.startswith("opt_")]}
    return {k: v for k, v in popped.items() if v is not None}


def per_method(methods, options: dict) -> dict[str, dict]:
    """Each method's share of the options, checked against its dataclass; an option no chosen method takes is a
    usage error."""
    from . import options as make

    for name in options:
        takers = [m for m in methods if name in {f.name for f in dataclasses.fields(METHODS[m].options)}]
        if not takers:
            raise UsageError(f"--{_flag(name)} does not apply to {', '.join(methods)}")
    result = {}
    for m in methods:
        fields = {f.name for f in dataclasses.fields(METHODS[m].options)}
        mine = {k: v for k, v in options.items() if k in fields}
        make(m, mine)  # checked now, before any image is read
        result[m] = mine
    return result
