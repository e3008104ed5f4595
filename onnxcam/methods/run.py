"""The engine's side of a gradient method: stream its rows through ONNX Runtime in chunks, sum each image's
contributions (per chunk inside the graph where it can be built, across chunks in float64), reduce, and turn the map
into a heatmap with a per-image validity flag. A one-row CAM of class targets runs instead as the exporter's graph of
the whole method, one ORT run from image to heatmap."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..autodiff import grad_name
from ..errors import UsageError
from ..explanation import Explanation
from ..layers import Layer
from ..runner import Weights
from .arrays import NumpyArrays
from .common import baseline_like, chosen_classes, forward, image_size, target_score
from .definition import Context, EngineOnly, Gradient, Noise, Path, Row, Single
from .maps import cam_heatmap, flat_maps, normalize, pixel_map
from .options import Options
from .smooth import noise
from .summed import CARRY, LAST, MEMBERS, ROW_WEIGHTS, contribution_key, summed, summing_graph


def run(runner, definition: Gradient | EngineOnly, x: np.ndarray, targets: np.ndarray, layer: Layer | None,
        options: Options, batch_size: int) -> Explanation:
    if isinstance(definition, EngineOnly):
        return definition.run(runner, x, targets, layer, options, batch_size)
    return _Run(runner, definition, x, targets, layer, options, batch_size).explanation()


def interpolate(x: np.ndarray, base: np.ndarray, alphas: np.ndarray):
    """make_rows for row r = image · S + step: x' + α_step (x − x') in float32, and x itself at α = 1 (as exported
    graphs)."""
    s, a32 = len(alphas), alphas.reshape(-1, *([1] * (x.ndim - 1))).astype(np.float32)
    base, diff = np.asarray(base, np.float32), np.asarray(x - base, np.float32)  # what the session is fed

    def rows(r: np.ndarray) -> np.ndarray:
        i, k = np.divmod(r, s)
        out = np.empty((len(r), *x.shape[1:]), np.float32)
        for image, at in runs(i):  # by broadcasting each image's x and x', not gathering copies of them
            np.multiply(a32[k[at]], diff[image], out=out[at])
            out[at] += base[image]
        end = alphas[k] == 1
        out[end] = x[i[end]]
        return out

    return rows


def runs(images: np.ndarray) -> Iterator[tuple[int, slice]]:
    """(image, rows) for each run of consecutive rows of one image: a chunk holds one image's rows, then the next's."""
    cuts = [0, *(np.flatnonzero(np.diff(images)) + 1), len(images)]
    return ((int(images[lo]), slice(lo, hi)) for lo, hi in zip(cuts, cuts[1:]))


def noisy(x: np.ndarray, plan: Noise):
    """make_rows for row r = image · samples + k: x + σ·range(x)·ε_k, ε seeded per (image, k)."""
    flat = x.reshape(len(x), -1)
    spread = plan.sigma * (flat.max(1) - flat.min(1))

    def rows(r: np.ndarray) -> np.ndarray:
        i, k = np.divmod(r, plan.samples)
        return np.stack([x[a] + spread[a] * noise(plan.seed, a, b, x.shape[1:]) for a, b in zip(i, k)])

    return rows


class _Run:
    def __init__(self, runner, d: Gradient, x, targets, layer, o, batch_size: int):
        self.runner, self.d, self.x, self.targets, self.layer, self.o = runner, d, x, targets, layer, o
        self.weights = targets if isinstance(targets, Weights) else None  # seed weights instead of classes
        self.seeded = self.weights is not None
        if self.weights is not None and getattr(o, "score", "logit") != "logit":
            raise UsageError(f"score={o.score!r} is a class probability; a {d.name} target weighting the output "
                             "explains the output itself: pass score='logit'")
        self.batch = batch_size
        self.model = runner.model
        self.ops = NumpyArrays(layer.rank if layer is not None else runner.model.rank)
        self.sums: dict[str, np.ndarray] = {}
        self.rows = {"gradient": 0, "forward": 0}

    def grid(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, np.float64)
        return self.ops.grid(t, self.layer) if self.layer is not None else t

    def add(self, images: np.ndarray, row: Row) -> None:
        """Sum one chunk's contributions into their images."""
        once = len(np.unique(images)) == len(images)  # one row per image (single-row methods): no grouping
        for name, t in self.d.contribution(self.ops, row, self.o).items():
            t = np.asarray(t, np.float64)
            total = self.sums.setdefault(name, np.zeros((len(self.x), *t.shape[1:])))
            if once:
                total[images] += t
                continue
            for i, at in runs(images):
                total[i] += t[at].sum(0)

    def explanation(self) -> Explanation:
        plan = self.d.rows(self.o)
        whole = self.whole_map_session() if isinstance(plan, Single) else None
        if whole is not None:
            return self.whole_map(whole)
        if isinstance(plan, Single):
            logits, chosen, acts = self.single()
            base, y0 = None, np.full(len(self.x), np.nan)
        else:
            logits, chosen, acts, base, y0 = self.path_or_noise(plan)
        ctx = Context(x=self.x.astype(np.float64), image_axes=tuple(range(1 - self.x.ndim, 0)), baseline=base)
        if self.layer is not None:
            ctx.a = self.grid(acts)
            ctx.channels, ctx.grid = ctx.a.shape[1], ctx.a.shape[2:]
        out = dict(self.d.finish(self.ops, self.sums, ctx, self.o))
        result, total = out.pop("map"), out.pop("total", None)
        extras = {**out, "rows": self.rows}
        gap = None
        if total is not None:
            y1 = np.array([self.score(logits[i], i, chosen) for i in range(len(self.x))])
            delta = y1 - (y0 if not np.isnan(y0).any() else self.baseline_scores(base, chosen))
            gap, extras["score_delta"] = total - delta, delta
        if self.layer is not None:
            return cam_explanation(self.runner, self.x, self.d.name, self.layer, result, logits, chosen,
                                   completeness_gap=gap, extras=extras)
        pixel = pixel_map(self.ops, result, self.model.channel_axis, self.d.reduce)
        flat = flat_maps(pixel)
        heatmap = np.where(per_image(flat, pixel), 0, normalize(self.ops, pixel)).astype(np.float32)
        return Explanation(method=self.d.name, heatmap=heatmap, logits=logits, target=chosen,
                           attribution=result.astype(np.float32), completeness_gap=gap, extras=extras, valid=~flat)

    def whole_map_session(self):
        """For a one-row CAM of class targets, the exporter's graph of the whole method: one run per chunk, from the
        image to its heatmap, and only the maps come back (None where the model cannot be exported)."""
        if self.layer is None or self.seeded:
            return None
        from ..export import engine_graph

        key = (self.d.name, self.layer.name, repr(self.o))
        return self.runner.graph_session(key, lambda: engine_graph(self.model, self.d, self.layer, self.o,
                                                                   self.runner.on_cpu))

    def whole_map(self, session) -> Explanation:
        from ..export import CAM, HEATMAP

        n = len(self.x)
        chunks = list(session.stream(lambda r: self.x[r[0] : r[-1] + 1], n, self.targets, self.batch, [HEATMAP, CAM]))
        self.rows["gradient"] = n

        def joined(parts: list[np.ndarray]) -> np.ndarray:
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        logits = joined([c.logits for c in chunks])
        cam, heatmap = (joined([c.outputs[name] for c in chunks]) for name in (CAM, HEATMAP))
        return cam_explanation(self.runner, self.x, self.d.name, self.layer, cam, logits,
                               chosen_classes(logits, self.targets), heatmap=heatmap, extras={"rows": self.rows})

    def names(self, wrt: str) -> list[str]:
        return [self.layer.name, grad_name(wrt)] if self.layer is not None else [grad_name(wrt)]

    def wrt(self) -> str:
        return self.layer.name if self.layer is not None else self.model.image_input

    def single(self):
        """One gradient row per image: logits, classes and A come with the gradient."""
        wrt = self.wrt()
        expose = (self.layer.name,) if self.layer is not None else ()
        session = self.runner.session((wrt,), self.o.score, expose=expose, seeded=self.seeded)
        logits, acts = [], []
        targets = self.weights.rows(1) if self.weights is not None else self.targets
        for c in session.stream(lambda r: self.x[r], len(self.x), targets, self.batch, self.names(wrt)):
            a = self.grid(c.outputs[self.layer.name]) if self.layer is not None else None
            g = self.grid(c.outputs[grad_name(wrt)])
            self.add(c.rows, Row(g=g, w=np.ones((len(c.rows),) + (1,) * (g.ndim - 1)), a=a))
            logits.append(c.logits)
            acts.append(c.outputs[self.layer.name] if self.layer is not None else None)
        self.rows["gradient"] = len(self.x)
        logits = np.concatenate(logits)
        return logits, chosen_classes(logits, self.targets), np.concatenate(acts) if self.layer is not None else None

    def path_or_noise(self, plan: Path | Noise):
        """A forward row per image (logits, classes, A at x), then the plan's gradient rows, S per image."""
        n, x = len(self.x), self.x
        expose = (self.layer.name,) if self.layer is not None else ()
        logits, chosen, exposed = forward(self.runner, x, self.targets, self.batch, expose)
        self.rows["forward"] += n
        acts = exposed[0] if exposed else None
        wrt, base = self.wrt(), None
        if isinstance(plan, Noise):
            s, weights, make_rows = plan.samples, np.full(plan.samples, 1 / plan.samples), noisy(x, plan)
            session = self.runner.session((wrt,), self.o.score, expose=expose, seeded=self.seeded)
        else:
            s, weights = len(plan.alphas), np.asarray(plan.weights, np.float64)
            base = baseline_like(plan.baseline, x, self.model)
            if plan.space == "activation":
                _, _, (base_acts,) = forward(self.runner, base, chosen, self.batch, expose)
                self.rows["forward"] += n
                session = self.runner.session((wrt,), self.o.score, tail=wrt, seeded=self.seeded)
                make_rows = interpolate(acts, base_acts, plan.alphas)
            else:
                make_rows = interpolate(x, base, plan.alphas)
                summing = self.summing_session() if self.runner.sum_in_graph and not self.seeded else None
                if summing is not None:
                    y0 = self.summed_rows(summing, make_rows, s, weights, chosen, plan.alphas)
                    return logits, chosen, acts, base, y0
                session = self.runner.session((wrt,), self.o.score, expose=expose, seeded=self.seeded)
        alphas = plan.alphas if isinstance(plan, Path) else None
        y0 = np.full(n, np.nan)
        carry = None
        fed = isinstance(plan, Path) and plan.space == "activation"  # the rows are the layer itself
        names = [grad_name(wrt)] if fed else self.names(wrt)
        targets = self.weights.rows(s) if self.weights is not None else np.repeat(chosen, s)
        for c in session.stream(make_rows, n * s, targets, self.batch, names):
            images, k = np.divmod(c.rows, s)
            g = self.grid(c.outputs[grad_name(wrt)])
            a = None
            if self.layer is not None:
                a = self.grid(c.feed if fed else c.outputs[self.layer.name])
            w = weights[k].reshape(-1, *[1] * (g.ndim - 1))
            if alphas is not None:
                for j in np.flatnonzero(alphas[k] == 0):
                    y0[images[j]] = self.score(c.logits[j], images[j], chosen)
            if self.d.pairs:
                prev_g = g[:-1] if carry is None else np.concatenate([carry[0], g[:-1]])
                prev_a = a[:-1] if carry is None else np.concatenate([carry[1], a[:-1]])
                if carry is None:  # the first chunk starts at step 0, which has no pair
                    prev_g, prev_a = np.concatenate([g[:1], prev_g]), np.concatenate([a[:1], prev_a])
                carry = (g[-1:], a[-1:])
                on = slice(None) if k.min() >= 1 else k >= 1  # a view unless the chunk starts an image
                row = Row(g=g[on], w=w[on], a=a[on], prev=Row(g=prev_g[on], w=w[on], a=prev_a[on]))
                self.add(images[on], row)
            else:
                self.add(images, Row(g=g, w=w, a=a))
        self.rows["gradient"] = n * s
        return logits, chosen, acts, base, y0

    def summing_session(self):
        """The session that sums the method's rows per image inside the graph (None where numpy sums them)."""
        key = ("sums", self.d.name, self.layer.name if self.layer is not None else None, self.o.score,
               contribution_key(self.d, self.o))
        return self.runner.graph_session(key, lambda: summing_graph(self.model, self.d, self.layer, self.o,
                                                                    self.runner.on_cpu))

    def summed_rows(self, session, make_rows, s: int, weights: np.ndarray, chosen: np.ndarray, alphas) -> np.ndarray:
        """The path's rows through the summing graph: per chunk, each image's sums (and the last row, the next
        chunk's first `prev`) come back, in float32, added up here in float64. Returns the scores at α = 0."""
        n = len(self.x)
        y0, carry = np.full(n, np.nan), None
        inputs = {i.name: i for i in session.session.get_inputs()}

        def feeds(rows: np.ndarray, fed: int) -> dict:
            images, k = np.divmod(rows, s)
            spans = list(runs(images))
            members = np.zeros((len(spans), fed), np.float32)
            for j, (_, at) in enumerate(spans):
                members[j, at] = 1
            if self.d.pairs:  # a path's first row has no pair
                members[:, : len(rows)][:, k == 0] = 0
            w = np.zeros(fed, np.float32)
            w[: len(rows)] = weights[k]
            out = {MEMBERS: members, ROW_WEIGHTS: w.reshape(-1, *[1] * (len(inputs[ROW_WEIGHTS].shape) - 1))}
            if self.d.pairs:
                out.update(carry or {CARRY[t]: np.zeros(inputs[CARRY[t]].shape, np.float32) for t in CARRY
                                     if CARRY[t] in inputs})
            return out

        names = {o.name: o.name.removeprefix(summed("")) for o in session.session.get_outputs()
                 if o.name.startswith(summed(""))}
        last = [LAST[t] for t in LAST if CARRY[t] in inputs]
        for c in session.stream(make_rows, n * s, np.repeat(chosen, s), self.batch, [*names, *last], extra=feeds):
            images, k = np.divmod(c.rows, s)
            for j in np.flatnonzero(alphas[k] == 0):
                y0[images[j]] = self.score(c.logits[j], images[j], chosen)
            for output, name in names.items():
                t = c.outputs[output]
                total = self.sums.setdefault(name, np.zeros((n, *t.shape[1:])))
                for j, (i, _) in enumerate(runs(images)):
                    total[i] += t[j]
            carry = {CARRY[t]: c.outputs[LAST[t]] for t in LAST if LAST[t] in c.outputs}
        self.rows["gradient"] = n * s
        return y0

    def baseline_scores(self, base: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """score(x') by forward rows: one when every image shares the baseline."""
        shared = all(np.array_equal(base[0], base[i]) for i in range(1, len(base)))
        b = 1 if shared else len(base)
        logits, _ = forward(self.runner, base[:b], chosen[:b], self.batch)[:2]
        self.rows["forward"] += b
        return np.array([self.score(logits[0 if shared else i], i, chosen) for i in range(len(base))])

    def score(self, y: np.ndarray, image: int, chosen: np.ndarray) -> float:
        return target_score(y, image, self.targets, chosen, self.o.score)


def per_image(flags: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """(N,) flags shaped to broadcast over (N, ...) maps."""
    return flags.reshape(-1, *[1] * (maps.ndim - 1))


def cam_explanation(runner, x, method: str, layer: Layer, cam: np.ndarray, logits, chosen,
                    heatmap: np.ndarray | None = None, **extra) -> Explanation:
    """A layer map with its heatmap at the input's size (made here unless given); a flat map's heatmap is zero and
    its image not valid."""
    flat = flat_maps(cam)
    if heatmap is None:
        heatmap = cam_heatmap(NumpyArrays(layer.rank), np.where(per_image(flat, cam), 0, cam).astype(np.float32),
                              image_size(runner.model, x))
    elif flat.any():
        heatmap = np.where(per_image(flat, heatmap), 0, heatmap)
    return Explanation(method=method, heatmap=np.asarray(heatmap, np.float32), logits=logits, target=chosen,
                       layer=layer.name, cam=np.asarray(cam, np.float32), valid=~flat, **extra)


def multi_layer(runner, x: np.ndarray, results: list[Explanation]) -> Explanation:
    """Several layers' maps in one: each normalized and resized to the input, averaged, normalized again
    (pytorch-grad-cam's compute_cam_per_layer + aggregate_multi_layers). `extras["cams"]` keeps each layer's map."""
    size = image_size(runner.model, x)
    ops = NumpyArrays(len(size))
    scaled = [ops.resize(normalize(ops, np.where(per_image(r.valid, r.cam), np.maximum(r.cam, 0), 0)), size)
              for r in results]
    first = results[0]
    valid = np.any([r.valid for r in results], axis=0)
    heatmap = np.where(per_image(valid, scaled[0]), normalize(ops, np.mean(scaled, axis=0)), 0).astype(np.float32)
    return Explanation(method=first.method, heatmap=heatmap, logits=first.logits, target=first.target,
                       layer=", ".join(r.layer for r in results), extras={"cams": {r.layer: r.cam for r in results}},
                       valid=valid)
