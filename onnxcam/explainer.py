"""The facade users call: a model, a layer chosen when a method needs one, and explain()."""

from __future__ import annotations

import numpy as np

from . import methods
from .errors import OnnxcamError, UsageError
from .explanation import Explanation
from .layers import Layer, candidate_layers, head_inputs, resolve_layer
from .methods.run import multi_layer, run
from .runner import Runner, Weights, batch_rows


class Explainer(Runner):
    """Explains one model; sessions are built on first use and shared by threads."""

    def __init__(self, model, layer: str | list[str] = "auto", device: str = "auto",
                 input_size: tuple[int, ...] | None = None, threads: int = 0, output: str | None = None):
        """`layer`: a layer, several (their maps are averaged as pytorch-grad-cam's aggregate_multi_layers does) or
        "auto"; `output`: the tensor to explain, for models whose first output is not class scores."""
        super().__init__(model, device, input_size, threads, output)
        layer = "auto" if layer is None else layer
        self._layer_spec = layer
        self._layers: list[Layer] | None = None if layer == "auto" else self._resolve(layer)  # named ones: now

    def _resolve(self, layer) -> list[Layer]:
        shape = self.output_shape
        if layer == "auto" and shape is not None and len(shape) != 2:
            return head_inputs(self.model)  # a detector's or segmenter's output: the layers its heads read
        names = [layer] if isinstance(layer, str) else list(layer)
        if not names:
            raise UsageError("layer must name at least one layer")
        return [resolve_layer(self.model, name) for name in names]

    @property
    def layer(self) -> Layer:
        """The (first) layer CAM methods explain; "auto" is resolved on first use, as IG, saliency and SmoothGrad need
        none."""
        return self.explained_layers[0]

    @property
    def explained_layers(self) -> list[Layer]:
        if self._layers is None:
            self._layers = self._resolve(self._layer_spec)
        return self._layers

    @property
    def layers(self) -> list[str]:
        return [x.name for x in candidate_layers(self.model)]

    def explain(self, x, method: str = "gradcam", target=None, layer: str | list[str] | None = None,
                batch_size: int | None = None, **options) -> Explanation:
        """Explain images x (N, …) or one image; `options` are the method's (see `onnxcam.methods.options`).

        `target`: None (top-1), a class or one per image, or onnxcam.targets objects (Segmentation, Detection,
        Seed: one for all images or one per image). Images whose map is constant are marked in `valid` (their
        heatmap is zero); one image alone, or a batch where no image has a map, raises instead."""
        definition = methods.get(method)
        opts = definition.options.of(method, options)
        rows = batch_rows(batch_size)
        x = self.check_input(x)
        targets = self.targets(target, x, rows)
        if isinstance(targets, Weights) and definition.targets == "class":
            raise UsageError(f"{method} explains class scores only; use a gradient method or eigencam for this target")
        if not isinstance(targets, Weights) and definition.targets != "none":
            self.refuse_classes()
        if not definition.needs_layer:
            result = run(self, definition, x, targets, None, opts, rows)
        else:
            chosen = self.explained_layers if layer is None else self._resolve(layer)
            results = [run(self, definition, x, targets, one, opts, rows) for one in chosen]
            result = results[0] if len(results) == 1 else multi_layer(self, x, results)
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
