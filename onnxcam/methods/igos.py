"""I-GOS (Qi, Khorram, Li 2019): a deletion mask optimized by integrated-gradient descent with an Armijo line search.

Every network evaluation goes through the engine in batches: per iteration, the S noisy path points of all
images stream as one run of rows through the gradient graph, then the line-search candidates of all images through
the forward-only graph (they need probabilities only). The mask is s×s; M̂ = U_h M U_wᵀ is its bilinear
(align-corners) upsampling, so the chain rule back to the mask is the adjoint U_hᵀ G U_w.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..autodiff import grad_name
from ..errors import OnnxcamError, UsageError
from ..explanation import Explanation
from ..image import IMAGENET_STD
from . import register
from .definition import EngineOnly
from .options import Options, option, seed, steps
from .smooth import noise as standard_normal

ETA0, SHRINK, ETA_MIN, ARMIJO = 200.0, 0.2, 1e-5, 1e-4  # line search: η₀, η ← 0.2η while η ≥ 1e-5, c in Armijo
NOISE = 0.2  # std of the path points' noise in ImageNet-normalized units (methods.md), i.e. 0.2·std_ImageNet in pixels
BLUR = (51, 50.0, 224)  # Gaussian kernel, σ, for inputs of this size; scaled with the input size otherwise
ETAS = ETA0 * SHRINK ** np.arange(int(np.floor(np.log(ETA_MIN / ETA0) / np.log(SHRINK))) + 1)  # 200 … 2.048e-5


def upsampling_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation with aligned corners (torch's UpsamplingBilinear2d along one axis)."""
    u = np.zeros((n_out, n_in))
    if n_in == 1:
        u[:, 0] = 1
        return u
    pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    low = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - low
    u[np.arange(n_out), low] = 1 - frac
    u[np.arange(n_out), low + 1] += frac
    return u


def blurred(x: np.ndarray) -> np.ndarray:
    """x̃: each channel of each (N, C, H, W) image through cv2.GaussianBlur (51 px, σ = 50 at 224 px, scaled)."""
    kernel, sigma, reference = BLUR
    scale = max(x.shape[2:]) / reference
    k = 2 * int(round((kernel // 2) * scale)) + 1
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[i, c] = cv2.GaussianBlur(np.ascontiguousarray(x[i, c]), (k, k), sigma * scale)
    return out


def l1_term(m: np.ndarray) -> np.ndarray:
    return np.abs(1 - m).mean(axis=(1, 2))


def tv_term(m: np.ndarray) -> np.ndarray:
    """TV(M) = mean|Δ_row M|² + mean|Δ_col M|², per mask."""
    return (np.diff(m, axis=1) ** 2).mean(axis=(1, 2)) + (np.diff(m, axis=2) ** 2).mean(axis=(1, 2))


def regularizer_gradient(m: np.ndarray, l1: np.ndarray, tv: float) -> np.ndarray:
    """∂/∂M of λ1·mean|1 − M| + λ2·TV(M) (sign(0) = 0 at |0|, as autograd takes it)."""
    s = m.shape[1]
    g = -l1[:, None, None] * np.sign(1 - m) / m[0].size
    for axis in (1, 2):
        d = 2 * np.diff(m, axis=axis) / (s * (s - 1))  # ∂ mean(Δ²) / ∂Δ
        pad = [(0, 0)] * 3
        pad[axis] = (1, 0)
        g += tv * np.pad(d, pad)  # +Δ_i at its upper end
        pad[axis] = (0, 1)
        g -= tv * np.pad(d, pad)  # −Δ_i at its lower end
    return g




def softmax_at(logits: np.ndarray, classes: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return (z / z.sum(-1, keepdims=True))[np.arange(len(classes)), classes]


@dataclass
class Problem:
    """The fixed parts of L(M) for N images, and `run(make_rows, n_rows, targets, kind)` over the gradient graph."""

    image: np.ndarray  # x, (N, C, H, W) float32
    base: np.ndarray  # x̃
    target: np.ndarray  # (N,) explained class
    up_h: np.ndarray  # (H, s)
    up_w: np.ndarray  # (W, s)
    tv: float
    batch: int
    run: Callable
    rows: dict = field(default_factory=lambda: {"initial": 0, "path": 0, "line_search": 0})

    def upsample(self, m: np.ndarray) -> np.ndarray:
        """M̂ = U_h M U_wᵀ for a stack of masks."""
        return self.up_h @ m @ self.up_w.T

    def adjoint(self, g: np.ndarray) -> np.ndarray:
        """U_hᵀ G U_w: a gradient with respect to M̂ brought back to M."""
        return self.up_h.T @ g @ self.up_w

    def masked(self, m: np.ndarray, images: np.ndarray) -> np.ndarray:
        """x ⊙ M̂ + x̃ ⊙ (1 − M̂) for masks m of the given images."""
        mhat = self.upsample(m).astype(np.float32)[:, None]
        return self.base[images] + mhat * (self.image[images] - self.base[images])

    def objective(self, p: np.ndarray, m: np.ndarray, l1: np.ndarray) -> np.ndarray:
        return p + l1 * l1_term(m) + self.tv * tv_term(m)


def noise_std(model, noise: float | None, channels: int) -> np.ndarray:
    """Per-channel std of the path noise in the model's input space: `noise` as given, or by default 0.2 in
    ImageNet-normalized units (the authors' setting) carried over to the model's normalization, 0.2·std_ImageNet/std
    with std from the model's onnxcam.std metadata (ImageNet's when absent, giving 0.2)."""
    if noise is not None:
        return np.full(channels, float(noise), np.float32)
    props = {p.key: p.value for p in model.proto.metadata_props}
    try:
        std = np.asarray([float(v) for v in props["onnxcam.std"].split(",")], np.float64)
    except (KeyError, ValueError):  # no usable metadata: taken as ImageNet-normalized
        return np.full(channels, NOISE, np.float32)
    if channels != 3 or std.shape != (3,) or not (np.isfinite(std).all() and (std > 0).all()):
        return np.full(channels, NOISE, np.float32)
    return (NOISE * np.asarray(IMAGENET_STD, np.float64) / std).astype(np.float32)


def score_direction(pb: Problem, mask: np.ndarray, it: int, steps: int, seed: int, sigma: np.ndarray) -> np.ndarray:
    """(1/S) Σ_k (k/S)·U_hᵀ[Σ_c (x − x̃) ⊙ ∇p_c(x̃ + (k/S)·M̂ ⊙ (x − x̃) + ε_k)]U_w, all images and points in one stream."""
    n, c, h, w = pb.image.shape
    mhat = pb.upsample(mask).astype(np.float32)
    diff = pb.image - pb.base
    t = np.arange(1, steps + 1) / steps

    def rows(r):
        i, k = np.divmod(r, steps)
        return np.stack([pb.base[a] + np.float32(t[b]) * mhat[a] * diff[a]
                         + sigma[:, None, None] * standard_normal(seed, a, it * steps + b, (c, h, w)) for a, b in zip(i, k)])

    g_hat = np.zeros((n, h, w))
    for r, _, g in pb.run(rows, n * steps, np.repeat(pb.target, steps), "path"):
        i, k = np.divmod(r, steps)
        np.add.at(g_hat, i, (t[k] / steps)[:, None, None] * (g * diff[i]).sum(1, dtype=np.float64))
    return pb.adjoint(g_hat)


def line_search(pb: Problem, mask, d, loss, l1, p):
    """Armijo: per image the largest η in ETAS with L(clip(M − ηd)) ≤ L(M) − 1e-4·η·‖d‖²; returns M, p_c, η.

    Candidates run in rounds of at most `batch` rows: the next untried steps of every image still searching,
    spread evenly over the round. An image stops at its first accepted step, or keeps M when none is."""
    n = len(mask)
    start, mask, p, eta = mask, mask.copy(), p.copy(), np.zeros(n)
    norm2 = (d**2).sum(axis=(1, 2))
    tried = np.zeros(n, int)
    searching = np.ones(n, bool)
    while searching.any():
        pending = np.flatnonzero(searching)
        per = max(1, pb.batch // len(pending))
        pairs = np.array([(j, k) for j in pending for k in range(tried[j], min(tried[j] + per, len(ETAS)))])
        images, steps = pairs[:, 0], ETAS[pairs[:, 1]]
        candidates = np.clip(start[images] - steps[:, None, None] * d[images], 0, 1)
        probs = np.zeros(len(pairs))

        def rows(r, m=candidates, i=images):
            return pb.masked(m[r], i[r])

        for r, lg, _ in pb.run(rows, len(pairs), pb.target[images], "line_search"):
            probs[r] = softmax_at(lg.astype(np.float64), pb.target[images[r]])
        values = pb.objective(probs, candidates, l1[images])
        accepted = values <= loss[images] - ARMIJO * steps * norm2[images]
        for j in pending:
            mine = np.flatnonzero(images == j)
            ok = mine[accepted[mine]]
            if len(ok):
                q = ok[0]
                mask[j], p[j], eta[j] = candidates[q], probs[q], steps[q]
                searching[j] = False
            else:
                tried[j] += len(mine)
                searching[j] = tried[j] < len(ETAS)
    return mask, p, eta


@dataclass(frozen=True)
class IgosOptions(Options):
    size: int = option(28, "Side of the optimized mask (size × size).", low=2, high=1 << 16, flag="mask-size")
    iterations: int = option(15, "Descent iterations.", low=1, high=10_000)
    l1: float = option(1.0, "Weight of the mask's L1 term.", kind="float", low=0)
    tv: float = option(20.0, "Weight of the mask's total variation.", kind="float", low=0)
    ig_steps: int = steps(20)
    noise: float | None = option(None, "Std of the path noise in the model's input space (default: 0.2 in "
                                 "ImageNet-normalized units).", kind="float", low=0, optional=True)
    seed: int = seed()


def igos(ex, x, targets, layer, o: IgosOptions, batch: int) -> Explanation:
    """min_M p_c(x ⊙ M̂ + x̃ ⊙ (1 − M̂)) + λ1·mean|1 − M| + λ2·TV(M) over M ∈ [0, 1]^{s×s}, from M = 1.

    Descent direction: the integrated gradient of the score along x̃ + (k/S)·M̂ ⊙ (x − x̃), k = 1..S, each point
    with N(0, σ²) noise (σ = `noise` in the model's input space; by default 0.2 in ImageNet-normalized units, see
    noise_std):
    (1/S) Σ_k (k/S)·U_hᵀ[Σ_c (x − x̃) ⊙ ∇p_c]U_w (the chain rule through (k/S)·M̂, as the authors' code
    differentiates it), plus the gradient of the regularizers. Armijo line search from η = 200,
    η ← 0.2η while η ≥ 1e-5; when no η is accepted the mask stays, so the objective never increases. λ1 is
    divided by 10 after iteration ⌊T/2⌋ (0-based) if p_c has moved by ≤ 0.001 from its start, by 5 after ⌊T/1.25⌋
    if by ≤ 0.01 (T > 3). heatmap = 1 − M̂ (in [0, 1], not renormalized), cam = 1 − M at s×s; the score is the softmax
    probability. extras: objective and p_c per iteration (T + 1 values each, the first at M = 1), accepted steps,
    final λ1, and the rows run (path rows are a forward + backward pass; the first pass and the line-search
    candidates, which need probabilities only, run forward only)."""
    if ex.model.rank != 2:
        raise UsageError(f"igos optimizes a mask over images; this model's input is {ex.model.layout}: use saliency, "
                         "ig, smoothgrad or a CAM method")
    nchw = ex.model.layout == "NCHW"
    image = x if nchw else np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # internally (N, C, H, W)
    h, w = image.shape[2:]
    s = o.size
    if s > min(h, w):
        raise UsageError(f"size must be an integer in 2..{min(h, w)} (the mask is size × size); got {s!r}")
    n_iter, n_path, l1, tv, noise, seed = o.iterations, o.ig_steps, o.l1, o.tv, o.noise, o.seed

    name = ex.model.image_input
    graph = ex.session((name,), "prob")

    forward_only = ex.session((), "logit")  # the first pass and the line search need probabilities only

    def run(make_rows, n_rows, row_targets, kind):
        def rows(r):
            z = make_rows(r)
            return z if nchw else z.transpose(0, 2, 3, 1)

        wanted = [grad_name(name)] if kind == "path" else []
        for chunk in (graph if wanted else forward_only).stream(rows, n_rows, row_targets, batch, wanted):
            pb.rows[kind] += len(chunk.rows)
            g = chunk.outputs[wanted[0]] if wanted else None
            yield chunk.rows, chunk.logits, g if nchw or g is None else g.transpose(0, 3, 1, 2)

    pb = Problem(image, blurred(image), targets, upsampling_matrix(h, s), upsampling_matrix(w, s), float(tv), batch, run)
    logits = np.concatenate([lg for _, lg, _ in run(lambda r: image[r], len(x), targets, "initial")])
    pb.target = np.where(targets < 0, logits.argmax(-1), targets)

    mask = np.ones((len(x), s, s))
    sigma = noise_std(ex.model, noise, image.shape[1])
    lam1 = np.full(len(x), float(l1))
    p = softmax_at(logits.astype(np.float64), pb.target)
    loss = pb.objective(p, mask, lam1)
    scores, objectives, steps = [p], [loss], []
    for it in range(n_iter):
        d = score_direction(pb, mask, it, n_path, seed, sigma) + regularizer_gradient(mask, lam1, pb.tv)
        mask, p, eta = line_search(pb, mask, d, loss, lam1, p)
        steps.append(eta)
        scores.append(p)
        moved = np.abs(p - scores[0])
        if n_iter > 3 and it == n_iter // 2:
            lam1 = np.where(moved <= 0.001, lam1 / 10, lam1)
        elif n_iter > 3 and it == int(n_iter / 1.25):
            lam1 = np.where(moved <= 0.01, lam1 / 5, lam1)
        loss = pb.objective(p, mask, lam1)
        objectives.append(loss)

    saliency = 1 - mask
    still = [i for i in range(len(x)) if np.ptp(saliency[i]) == 0]
    if still:
        raise OnnxcamError(f"igos mask of image {still[0]} did not move (no step decreased the objective); "
                           "try more iterations, a smaller l1 or tv, or another target")
    extras = {"objective": np.stack(objectives, 1), "score": np.stack(scores, 1), "step": np.stack(steps, 1), "noise": sigma,
              "l1": lam1, "rows": {**pb.rows, "total": sum(pb.rows.values())}}
    return Explanation(method="igos", heatmap=np.clip(1 - pb.upsample(mask), 0, 1).astype(np.float32), logits=logits,
                       target=pb.target, cam=saliency.astype(np.float32), extras=extras)


register(EngineOnly("igos", IgosOptions, igos))
