"""Method options as frozen dataclasses that check themselves: one schema for explain, export, the CLI and evaluate."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError

MAX_STEPS = 100_000  # path steps and noise samples: rows grow with this, memory does not (rows stream in chunks)


@dataclass(frozen=True)
class Spec:
    """How one option is checked and offered on the command line (`cli=False`: Python only, e.g. arrays)."""

    help: str
    kind: str = "int"  # int, float, choice, flag, baseline, custom
    low: float | None = None
    high: float | None = None
    strict: bool = False  # low is excluded
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is allowed (and means the method's own default)
    cli: bool = True
    flag: str | None = None  # the command-line name, where the field's own would clash with a command's option


def option(default, help: str, **spec):
    return field(default=default, metadata={"spec": Spec(help, **spec)})


@dataclass(frozen=True)
class Options:
    """Base of every method's options; fields declared with `option` are checked on construction."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            spec = f.metadata.get("spec")
            if spec is not None:
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name), spec))

    @classmethod
    def of(cls, method: str, given: dict) -> Options:
        """Options from keyword arguments; an unknown name is a usage error that lists the method's options."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            have = f"its options are {', '.join(names)}" if names else "it has none"
            raise UsageError(f"method {method!r} has no option {unknown[0]!r}; {have}")
        return cls(**given)

    def asdict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def check(name: str, value, spec: Spec):
    if value is None and spec.optional:
        return None
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not _in_range(value, spec):
            raise UsageError(f"{name} must be an integer {_range(spec)}; got {value!r}")
        return int(value)
    if spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
                or not _in_range(value, spec):
            raise UsageError(f"{name} must be a finite number {_range(spec)}; got {value!r}")
        return float(value)
    if spec.kind == "choice":
        if value not in spec.choices:
            raise UsageError(f"{name} must be one of {', '.join(spec.choices)}; got {value!r}")
        return value
    if spec.kind == "flag":
        if not isinstance(value, (bool, np.bool_)):
            raise UsageError(f"{name} must be True or False; got {value!r}")
        return bool(value)
    if spec.kind == "baseline":
        return baseline(name, value)
    return value


def baseline(name: str, value):
    """A number, "black" (a black image through the model's normalization) or an array in the input space."""
    if isinstance(value, str):
        if value != "black":
            raise UsageError(f"{name} must be a number, an array or 'black'; got {value!r}")
        return value
    if isinstance(value, bool):
        raise UsageError(f"{name} must be a number, an array or 'black'; got {value!r}")
    try:
        array = np.asarray(value, np.float32)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, an array or 'black'; got {type(value).__name__}") from None
    if not np.isfinite(array).all():
        raise UsageError(f"{name} contains NaN or infinite values")
    return float(array) if array.ndim == 0 else array


def _in_range(v, spec: Spec) -> bool:
    low_ok = spec.low is None or (v > spec.low if spec.strict else v >= spec.low)
    return low_ok and (spec.high is None or v <= spec.high)


def _range(spec: Spec) -> str:
    if spec.low is not None and spec.high is not None:
        return f"in {spec.low:g}..{spec.high:g}"
    if spec.low is not None:
        return f"{'>' if spec.strict else '>='} {spec.low:g}"
    return ""


def _plain(v):
    """JSON-friendly values (settings keys, exported metadata)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    return v


# Options shared by several methods, declared once.
def steps(default: int):
    return option(default, "Path steps.", low=1, high=MAX_STEPS)


def samples(default: int = 25):
    return option(default, "Noisy samples per image.", low=1, high=MAX_STEPS)


def sigma(default: float = 0.15):
    return option(default, "Noise level, a fraction of each image's value range.", kind="float", low=0)


def seed(default: int = 0):
    return option(default, "Seed of the noise.", low=0, high=2**63 - 1)


def score(default: str = "logit"):
    return option(default, "Score to differentiate: the logit or its softmax probability.", kind="choice",
                  choices=("logit", "prob"))


def baseline_option(default):
    return option(default, "Path start in the model's input space: a number, or 'black' (a black image through the "
                  "model's normalization).", kind="baseline")
