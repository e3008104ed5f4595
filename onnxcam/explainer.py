"""The facade users call: a model, a layer chosen when a method needs one, and explain()."""

from __future__ import annotations

import numpy as np

from . import methods
from .errors import OnnxcamError
from .explanation import Explanation
from .layers import Layer, candidate_layers, resolve_layer
from .methods.run import run
from .runner import Runner, batch_rows


class Explainer(Runner):
    """Explains one model; sessions are built on first use and shared by threads."""

    def __init__(self, model, layer: str = "auto", device: str = "auto", input_size: tuple[int, int] | None = None,
                 threads: int = 0):
        super().__init__(model, device, input_size, threads)
        self._layer_spec = layer
        self._layer: Layer | None = None if layer == "auto" else resolve_layer(self.model, layer)  # a named one: now

    @property
    def layer(self) -> Layer:
        """The layer CAM methods explain; "auto" is resolved on first use, as IG, saliency and SmoothGrad need none."""
        if self._layer is None:
            self._layer = resolve_layer(self.model, self._layer_spec)
        return self._layer

    @property
    def layers(self) -> list[str]:
        return [x.name for x in candidate_layers(self.model)]

    def explain(self, x, method: str = "gradcam", target=None, layer: str | None = None, batch_size: int | None = None,
                **options) -> Explanation:
        """Explain images x (N, …) or one image; `options` are the method's (see `onnxcam.methods.options`).

        Images whose map is constant are marked in `valid` (their heatmap is zero); one image alone, or a batch
        where no image has a map, raises instead."""
        definition = methods.get(method)
        opts = definition.options.of(method, options)
        rows = batch_rows(batch_size)
        x = self.check_input(x)
        targets = self.targets(target, len(x))
        chosen = (self.layer if layer is None else resolve_layer(self.model, layer)) if definition.needs_layer else None
        result = run(self, definition, x, targets, chosen, opts, rows)
        if not result.valid.any() or (len(x) == 1 and not result.valid[0]):
            raise OnnxcamError(no_signal(result, int(np.flatnonzero(~result.valid)[0])))
        return result


def no_signal(result: Explanation, image: int, name: str | None = None) -> str:
    """Why image `image` (called `name`, else by its index) has no map, in one line."""
    raw = result.cam if result.cam is not None else result.attribution
    finite = raw is None or np.isfinite(raw[image]).all()
    why = "no signal" if finite else "not finite"
    where = "at this layer " if result.layer else ""
    fix = "another layer, target or method" if result.layer else "another target or method"
    subject = f"{result.method} map of {name or f'image {image}'}"
    return f"{subject} is constant ({why}): the gradients vanish {where}for this class; try {fix}"
