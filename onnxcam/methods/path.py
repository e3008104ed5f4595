"""Path-integral CAMs: the layer's A and G along x' + α (x − x'), reduced once for the engine and the export."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register
from .definition import Gradient, Path
from .options import Options, baseline_option, option, score, steps


@dataclass(frozen=True)
class RsiOptions(Options):
    steps: int = steps(50)
    baseline: object = baseline_option("black")
    score: str = score("prob")
    grad_relu: bool = option(True, "ReLU on the gradients before the sum (the authors' code).", kind="flag")
    path: str = option("input", "Interpolate the input, or the layer's activations (then only the network after the "
                       "layer runs per step).", kind="choice", choices=("input", "activation"))
    rule: str = option("trapezoid", "Riemann–Stieltjes rule: both ends of each step, or the left one.", kind="choice",
                       choices=("trapezoid", "left"))


def rsi_rows(o: RsiOptions) -> Path:
    m = o.steps
    return Path(np.linspace(0.0, 1.0, m + 1), np.ones(m + 1), o.baseline, o.path)


def rsi_step(ops, row, o: RsiOptions):
    """½(G_{i−1} + G_i) ⊙ (A_i − A_{i−1}) (or G_{i−1} ⊙ ΔA with the left rule), with and without ReLU on G."""
    da = row.a - row.prev.a

    def mid(g0, g1):
        return 0.5 * (g0 + g1) if o.rule == "trapezoid" else g0

    return {"r": mid(row.prev.g, row.g) * da, "r_relu": mid(ops.relu(row.prev.g), ops.relu(row.g)) * da}


def rsi_finish(ops, s, ctx, o: RsiOptions):
    """w_k = mean_ij R^k; L = ReLU(mean_k w_k A^k(x))."""
    r = s["r_relu"] if o.grad_relu else s["r"]
    cam = ops.relu(ops.channel_dot(ops.mean(r, ops.space, keepdims=True), ctx.a) / float(ctx.channels))
    return {"map": cam, "total": ops.sum(s["r"], (ops.channel, *ops.space)), "R": r}


def rsi_exportable(o: RsiOptions) -> str | None:
    return "path='activation' runs the network from the layer, a second graph" if o.path != "input" else None


register(Gradient("rsi-gradcam", RsiOptions, "layer", rsi_rows, rsi_step, rsi_finish, pairs=True,
                  exportable=rsi_exportable))


@dataclass(frozen=True)
class IntegratedGradcamOptions(Options):
    steps: int = steps(50)
    baseline: object = baseline_option(0.0)
    score: str = score()


def left_riemann(o) -> Path:
    return Path(np.arange(o.steps) / o.steps, np.ones(o.steps), o.baseline)


def integrated_gradcam_step(ops, row, o):
    """ReLU(Σ_k A^k(x_m) · mean_ij ∂y/∂A^k_ij(x_m))."""
    return {"cam": ops.relu(ops.sum(ops.mean(row.g, ops.space, keepdims=True) * row.a, ops.channel))}


def sum_of_steps(ops, s, ctx, o):
    return {"map": s["cam"]}


register(Gradient("integrated-gradcam", IntegratedGradcamOptions, "layer", left_riemann, integrated_gradcam_step,
                  sum_of_steps))
