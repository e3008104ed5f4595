"""Path-integral CAMs: the scaled inputs of all images and steps stream through the graph as rows."""

from __future__ import annotations

import numpy as np

from ..autodiff import grad_name
from ..errors import OnnxcamError
from . import method
from .cam import relu
from .common import (
    baseline_like,
    batch_rows,
    cam_explanation,
    layer_forward,
    layer_stream,
    positive_int,
    score_of,
    to_grid,
)


def interpolate(x: np.ndarray, base: np.ndarray, alphas: np.ndarray):
    """make_rows for row r = image · S + step: x' + α_step (x − x')."""
    s = len(alphas)

    def rows(r: np.ndarray) -> np.ndarray:
        i, k = np.divmod(r, s)
        a = alphas[k].reshape(-1, *([1] * (x.ndim - 1))).astype(np.float32)
        return base[i] + a * (x[i] - base[i])

    return rows


@method("rsi-gradcam")
def rsi_gradcam(
    ex, x, targets, layer, steps: int = 50, baseline="black", score: str = "prob", grad_relu: bool = True,
    path: str = "input", rule: str = "trapezoid", batch_size: int | None = None,
):
    """R = Σ_i ½(G_{i−1} + G_i) ⊙ (A_i − A_{i−1}) along x_i = x' + (i/m)(x − x'); w_k = mean_ij R^k;
    L = ReLU(mean_k w_k A^k(x)). Defaults follow the authors' code (prob score, ReLU on G, both ends)."""
    m = positive_int("steps", steps)
    if path not in ("input", "activation") or rule not in ("trapezoid", "left"):
        raise OnnxcamError(f"path must be 'input' or 'activation' and rule 'trapezoid' or 'left'; got {path!r}, {rule!r}")
    base = baseline_like(baseline, x, ex.model)
    logits, chosen, acts = layer_forward(ex, x, targets, layer, batch_size, grid=False)
    alphas = np.linspace(0.0, 1.0, m + 1)
    n, s = len(x), m + 1
    rows = np.repeat(chosen, s)
    if path == "input":
        stream = layer_stream(ex, layer, score, interpolate(x, base, alphas), n * s, rows, batch_size)
    else:
        _, _, base_acts = layer_forward(ex, base, chosen, layer, batch_size, grid=False)
        graph = ex.graph((layer.name,), score, tail=layer.name)
        stream = (
            (p.rows, p.logits, p.feed, p.outputs[grad_name(layer.name)])
            for p in graph.stream(interpolate(acts, base_acts, alphas), n * s, rows, batch_rows(batch_size),
                                  [grad_name(layer.name)])
        )
    grid = to_grid(acts, layer)
    total, total_relu = np.zeros_like(grid), np.zeros_like(grid)
    prev_a, prev_g = [None] * n, [None] * n
    y0, y1 = np.zeros(n), np.zeros(n)
    for chunk_rows, chunk_logits, chunk_a, chunk_g in stream:
        for r, lg, a, g in zip(chunk_rows, chunk_logits, to_grid(chunk_a, layer), to_grid(chunk_g, layer)):
            i, k = divmod(int(r), s)
            if k == 0:
                y0[i] = score_of(lg, chosen[i], score)
            else:
                da = a - prev_a[i]
                both = rule == "trapezoid"
                total[i] += (0.5 * (prev_g[i] + g) if both else prev_g[i]) * da
                total_relu[i] += (0.5 * (relu(prev_g[i]) + relu(g)) if both else relu(prev_g[i])) * da
            if k == m:
                y1[i] = score_of(lg, chosen[i], score)
            prev_a[i], prev_g[i] = a, g
    r = total_relu if grad_relu else total  # the Riemann–Stieltjes sum R (N, K, h, w) the weights average
    weights = r.mean(axis=(2, 3))
    cam = relu(np.einsum("nk,nkhw->nhw", weights, grid) / grid.shape[1])
    gap = total.sum(axis=(1, 2, 3)) - (y1 - y0)
    rows = {"gradient": n * s, "forward": n * (2 if path == "activation" else 1)}
    return cam_explanation(ex, "rsi-gradcam", layer, cam, logits, chosen, completeness_gap=gap,
                           extras={"score_delta": y1 - y0, "path": path, "steps": m, "R": r, "rows": rows})


@method("integrated-gradcam")
def integrated_gradcam(ex, x, targets, layer, steps: int = 50, baseline=0.0, score: str = "logit",
                       batch_size: int | None = None):
    """L = Σ_{m<M} ReLU(Σ_k A^k(x_m) · mean_ij ∂y/∂A^k_ij(x_m)), x_m = x' + (m/M)(x − x') (left Riemann sum)."""
    m = positive_int("steps", steps)
    base = baseline_like(baseline, x, ex.model)
    logits, chosen, acts = layer_forward(ex, x, targets, layer, batch_size)
    total = np.zeros((len(x), *acts.shape[2:]), np.float64)
    alphas = np.arange(m) / m
    stream = layer_stream(ex, layer, score, interpolate(x, base, alphas), len(x) * m, np.repeat(chosen, m), batch_size)
    for rows, _, a, g in stream:
        a, g = to_grid(a, layer), to_grid(g, layer)
        step_maps = relu(np.einsum("nk,nkhw->nhw", g.mean(axis=(2, 3)), a))
        np.add.at(total, rows // m, step_maps)
    return cam_explanation(ex, "integrated-gradcam", layer, total, logits, chosen,
                           extras={"rows": {"gradient": len(x) * m, "forward": len(x)}})
