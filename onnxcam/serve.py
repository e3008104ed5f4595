"""`onnxcam serve`: a KServe model server whose V1 :predict/:explain and V2 infer share one thread-safe Explainer.

Needs the extra `serve` (kserve); the rest of onnxcam never imports this module.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .errors import OnnxcamError
from .evaluate import method_parameters
from .explainer import Explainer
from .explanation import Explanation
from .image import Preprocessing, decode_rgb, model_preprocessing, overlay, png_bytes
from .methods.common import forward_top1

_argv, sys.argv = sys.argv, sys.argv[:1]  # kserve parses sys.argv when imported: onnxcam's flags are not its own
try:
    import kserve
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve import model_server
    from kserve.errors import InferenceError, InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
finally:
    sys.argv = _argv

MAX_BODY = 32 << 20  # bytes of one request body: 32 MiB holds a few large JPEGs or ~16 JSON tensors of 224x224
MAX_INSTANCES = 32  # images per request: every one is explained before the response goes out
MAX_STEPS = 512  # path steps per request: bounds a request's run time, not only its memory
PARAMETERS = ("method", "target", "steps", "overlay", "top_k")
V2_ONLY = ("binary_data_output",)  # KServe's own V2 parameter


def one_line(text: str, limit: int = 400) -> str:
    """Error bodies are one line: clients log them and users grep them."""
    return " ".join(str(text).split())[:limit] or "bad request"


@dataclass(frozen=True)
class Options:
    """A request's "parameters", checked: what to explain and how to answer."""

    method: str
    target: int | list[int] | None
    steps: int | None
    overlay: bool
    top_k: int


class ExplainerModel(kserve.Model):
    """One ONNX model behind KServe: :predict answers top-k classes, :explain and V2 infer add a heatmap per image."""

    def __init__(self, name: str, model: str | os.PathLike, method: str = "gradcam", layer: str = "auto",
                 device: str = "auto", input_size: tuple[int, int] | None = None,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None, layout: str | None = None,
                 threads: int | None = None):
        super().__init__(name)
        self.config = {"model": str(model), "method": method, "layer": layer, "device": device, "input_size": input_size,
                       "mean": mean, "std": std, "layout": layout, "threads": threads}
        self.method = method
        self.explainer = Explainer(model, layer=layer, device=device, input_size=input_size)
        self.preprocessing: Preprocessing = model_preprocessing(self.explainer.model, mean, std, layout)
        self.pool = ThreadPoolExecutor(threads or _cpus(), thread_name_prefix="onnxcam")

    def __getstate__(self) -> dict:
        """`--workers` > 1 pickles the model into each server process: send its settings, not its sessions."""
        return {"name": self.name, "config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["name"], **state["config"])
        install(model_server.app)  # a spawned worker imports a fresh KServe app
        self.load()

    def load(self) -> bool:
        """Builds the default method's sessions on a noise image: a model the method cannot explain fails at start-up."""
        shape = [d if isinstance(d, int) else 1 for d in self.explainer.model.input_shape]
        noise = np.random.default_rng(0).standard_normal([1, *shape[1:]]).astype(np.float32)
        self.explainer.explain(noise, method=self.method)
        forward_top1(self.explainer, noise, np.full(1, -1, np.int64))
        self.ready = True
        return self.ready

    async def predict(self, payload, headers=None, response_headers=None):
        """V1 :predict (a dict) or V2 infer (an InferRequest, explained like :explain)."""
        if isinstance(payload, InferRequest):
            return await self._off_loop(self.infer_v2, payload)
        return await self._off_loop(self.predict_v1, payload)

    async def explain(self, payload, headers=None):
        return await self._off_loop(self.explain_v1, payload)

    async def _off_loop(self, work, payload):
        """Runs a request on the model's threads (the event loop keeps answering) with one-line errors: 400 for input."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, work, payload)
        except InvalidInput:
            raise
        except OnnxcamError as e:
            raise InvalidInput(one_line(e)) from None
        except MemoryError:
            raise InferenceError("out of memory; send fewer images or fewer steps per request") from None
        except Exception as e:
            raise InferenceError(one_line(f"internal error {type(e).__name__}: {e}")) from None

    # ------------------------------------------------------------ V1

    def predict_v1(self, payload) -> dict:
        x, _ = self.instances(payload)
        options = self.options(_parameters(payload), len(x))
        logits, _ = forward_top1(self.explainer, x, np.full(len(x), -1, np.int64))
        return {"predictions": _top_items(logits, options.top_k)}

    def explain_v1(self, payload) -> dict:
        x, views = self.instances(payload)
        options = self.options(_parameters(payload), len(x))
        res = self.run(x, options)
        items = []
        for i, top in enumerate(_top_items(res.logits, options.top_k)):
            item = {"target": int(res.target[i]), **top, "heatmap": res.heatmap[i].tolist()}
            if options.overlay:
                item["overlay_png"] = self.overlay_b64(x[i], views[i], res.heatmap[i])
            items.append(item)
        return {"method": options.method, "layer": res.layer, "explanations": items}

    def instances(self, payload) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Model inputs and RGB views from {"instances": [...]}: image files as {"image_bytes": {"b64": ...}}, or tensors."""
        payload = _json(payload)
        items = payload.get("instances")
        if not isinstance(items, list) or not items:
            raise InvalidInput('expected a JSON object {"instances": [...]} with at least one instance')
        _check_count(len(items))
        pairs = [self.instance(item, i) for i, item in enumerate(items)]
        return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]

    def instance(self, item, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if isinstance(item, dict):
            b64 = item.get("image_bytes", {}).get("b64") if isinstance(item.get("image_bytes"), dict) else None
            if not isinstance(b64, str):
                raise InvalidInput(f'instance {index}: expected {{"image_bytes": {{"b64": "<PNG or JPEG>"}}}} or a tensor')
            return self.image(_b64(b64, f"instance {index}"), f"instance {index}")
        try:
            x = np.asarray(item, np.float32)
        except (ValueError, TypeError):
            raise InvalidInput(f"instance {index}: not an image and not a tensor of numbers") from None
        return self.tensor(x, f"instance {index}"), None

    def image(self, data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
        """An image file preprocessed as `onnxcam explain` does: header pixel cap, decode, resize, crop, normalize."""
        x, view = self.preprocessing(decode_rgb(data, f"in {where}"))
        if not np.isfinite(x).all():
            raise InvalidInput(f"{where}: normalizing gives NaN or infinite values; check the server's --mean and --std")
        return x, view

    def tensor(self, x: np.ndarray, where: str) -> np.ndarray:
        """A preprocessed image in the model's layout: its shape checked here, its values by the Explainer."""
        expected = self.explainer.model.input_shape[1:]
        if x.ndim != len(expected) or any(isinstance(e, int) and e != a for e, a in zip(expected, x.shape)):
            wanted = ", ".join(str(d) for d in expected)
            raise InvalidInput(f"{where}: a tensor of shape {tuple(x.shape)}, but the model takes images of shape ({wanted}) "
                               f"in {self.explainer.model.layout} layout, preprocessed")
        try:
            return self.explainer.check_input(x[None])[0]
        except OnnxcamError as e:
            raise InvalidInput(f"{where}: {one_line(e)}") from None

    def overlay_b64(self, x: np.ndarray, view: np.ndarray | None, heatmap: np.ndarray) -> str:
        """The overlay PNG of `onnxcam explain`, over the de-normalized tensor when the request sent no image."""
        if view is None:
            p = self.preprocessing
            hwc = x.transpose(1, 2, 0) if p.layout == "NCHW" else x
            view = np.clip(hwc * np.asarray(p.std, np.float32) + np.asarray(p.mean, np.float32), 0, 1)
        return base64.b64encode(png_bytes(overlay(view, heatmap))).decode("ascii")

    # ------------------------------------------------------------ shared

    def options(self, params: dict, n: int, extra: tuple[str, ...] = ()) -> Options:
        unknown = sorted(set(params) - set(PARAMETERS) - set(extra))
        if unknown:
            raise InvalidInput(f"unknown parameter {unknown[0]!r}; known: {', '.join(PARAMETERS)}")
        method = params.get("method", self.method)
        if not isinstance(method, str):
            raise InvalidInput(f"parameter method must be a string; got {method!r}")
        steps = params.get("steps")
        if steps is not None and (not _is_int(steps) or not 1 <= steps <= MAX_STEPS):
            raise InvalidInput(f"parameter steps must be an integer in 1..{MAX_STEPS}; got {steps!r}")
        if steps is not None and method_parameters(method) and "steps" not in method_parameters(method):
            raise InvalidInput(f"parameter steps does not apply to {method} (only to path methods such as rsi-gradcam)")
        target = params.get("target")
        if not (target is None or _is_int(target) or (isinstance(target, list) and all(_is_int(t) for t in target))):
            raise InvalidInput(f"parameter target must be an integer or a list of {n} integers; got {str(target)[:60]}")
        if isinstance(target, list) and len(target) != n:
            raise InvalidInput(f"parameter target has {len(target)} classes for {n} instances")
        classes = self.explainer.num_classes or 1 << 30
        top = params.get("top_k", 5)
        if not _is_int(top) or top < 1:
            raise InvalidInput(f"parameter top_k must be a positive integer; got {top!r}")
        show = params.get("overlay", False)
        if not isinstance(show, bool):
            raise InvalidInput(f"parameter overlay must be true or false; got {show!r}")
        return Options(method, target, steps, show, min(top, classes))

    def run(self, x: np.ndarray, options: Options) -> Explanation:
        extra = {"steps": options.steps} if options.steps is not None else {}
        return self.explainer.explain(x, method=options.method, target=self.targets(x, options.target), **extra)

    def targets(self, x: np.ndarray, target: int | list[int] | None) -> int | list[int] | None:
        """−1 asks for the top-1 class, as the `target` input of exported models does (here per image too)."""
        if target == -1:
            return None
        if isinstance(target, list) and -1 in target and min(target) == -1:
            return forward_top1(self.explainer, x, np.asarray(target, np.int64))[1].tolist()
        return target

    # ------------------------------------------------------------ V2

    def infer_v2(self, request: InferRequest) -> InferResponse:
        """Open Inference Protocol: one image input (FP32 tensor, or BYTES image files), an optional INT64 `target`."""
        images = [t for t in request.inputs if t.name != "target"]
        if len(images) != 1:
            raise InvalidInput(f"expected one image input (and optionally 'target'); got {len(images)} other inputs")
        x, views = self.v2_images(images[0])
        params = dict(request.parameters or {})
        targets = [t for t in request.inputs if t.name == "target"]
        if targets:
            params["target"] = _v2_targets(targets[0], len(x))
        options = self.options(params, len(x), V2_ONLY)
        res = self.run(x, options)
        classes, scores = top_k(res.logits, options.top_k)
        outputs = {
            "heatmap": res.heatmap.astype(np.float32),
            "target": np.asarray(res.target, np.int64),
            "classes": classes,
            "scores": scores.astype(np.float32),
        }
        if options.overlay:
            outputs["overlay_png"] = np.array([self.overlay_b64(x[i], views[i], res.heatmap[i]) for i in range(len(x))],
                                              np.object_)
        infer = [InferOutput(k, list(v.shape), "BYTES" if v.dtype == np.object_ else _V2_TYPES[v.dtype.name], data=v)
                 for k, v in outputs.items()]
        return InferResponse(request.id or str(uuid.uuid4()), self.name, infer, parameters={"method": options.method},
                             use_binary_outputs=request.use_binary_outputs, requested_outputs=request.request_outputs)

    def v2_images(self, tensor) -> tuple[np.ndarray, list[np.ndarray | None]]:
        shape = list(tensor.shape)
        if not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise InvalidInput(f"input {tensor.name!r}: shape {shape} is not a list of sizes")
        _check_count(shape[0])
        try:
            data = tensor.as_numpy()
        except (ValueError, TypeError, OverflowError) as e:
            raise InvalidInput(f"input {tensor.name!r}: data do not fit datatype {tensor.datatype} and shape {shape} "
                               f"({one_line(e, 120)})") from None
        if tensor.datatype == "BYTES":
            if data.ndim != 1:
                raise InvalidInput(f"input {tensor.name!r}: BYTES images need shape [N]; got {shape}")
            pairs = [self.image(_v2_bytes(v, f"image {i}"), f"image {i}") for i, v in enumerate(data)]
            return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]
        if tensor.datatype not in ("FP32", "FP64", "FP16"):
            raise InvalidInput(f"input {tensor.name!r}: datatype {tensor.datatype}; send FP32 tensors or BYTES image files")
        return np.stack([self.tensor(row.astype(np.float32), f"image {i}") for i, row in enumerate(data)]), [None] * len(data)


_V2_TYPES = {"float32": "FP32", "int64": "INT64"}


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) most probable classes and their softmax probabilities, as in `onnxcam explain`'s results.jsonl."""
    z = np.exp(logits.astype(np.float64) - logits.max(-1, keepdims=True))
    probs = z / z.sum(-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return order.astype(np.int64), np.take_along_axis(probs, order, -1)


def _top_items(logits: np.ndarray, k: int) -> list[dict]:
    classes, scores = top_k(logits, k)
    return [{"classes": c, "scores": s} for c, s in zip(classes.tolist(), scores.tolist())]


def _cpus() -> int:
    """Request threads: the CPUs this process may use (ONNX Runtime parallelizes inside each run as well)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json(payload) -> dict:
    """A V1 body as a dict: KServe passes non-JSON content types through as bytes."""
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("request body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidInput('expected a JSON object {"instances": [...]}')
    return payload


def _parameters(payload) -> dict:
    params = _json(payload).get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput('"parameters" must be a JSON object')
    return params


def _check_count(n: int) -> None:
    if not 1 <= n <= MAX_INSTANCES:
        raise InvalidInput(f"{n} instances in one request; send 1..{MAX_INSTANCES}")


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: b64 is not valid base64") from None


def _v2_bytes(value, where: str) -> bytes:
    """A BYTES element: raw file bytes (binary extension) or base64 text (JSON)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return _b64(value, where)
    raise InvalidInput(f"{where}: expected image file bytes or base64 text")


def _v2_targets(tensor, n: int) -> list[int]:
    if tensor.datatype not in ("INT64", "INT32"):
        raise InvalidInput(f"input 'target': datatype {tensor.datatype}; send INT64 class indices (-1 = top-1)")
    try:
        t = tensor.as_numpy().reshape(-1)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput("input 'target': data do not fit its shape") from None
    if len(t) not in (1, n):
        raise InvalidInput(f"input 'target' has {len(t)} classes for {n} images; send 1 or {n}")
    return [int(v) for v in np.broadcast_to(t, (n,))]


# ------------------------------------------------------------ the HTTP server


class BodyLimit:
    """ASGI middleware: refuses a body over `limit` bytes before it is read, by its Content-Length or while streaming."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"error": self.message(int(declared))}, 400, headers={"connection": "close"})
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise InvalidInput(self.message(seen))
            return message

        return await self.app(scope, limited, send)

    def message(self, size: int) -> str:
        return f"request body of {size} bytes is over the limit of {self.limit} ({self.limit >> 20} MiB); send fewer images"


async def _validation_error(_, exc: RequestValidationError) -> JSONResponse:
    """FastAPI answers a malformed V2 body with a 422 and a list: one line and a 400, like every bad request here."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return JSONResponse({"error": one_line(f"invalid V2 request {where}: {first.get('msg', 'malformed body')}")}, 400)


def install(app) -> None:
    """Adds the body limit and one-line 400s to KServe's FastAPI app, once per process, before it serves."""
    if getattr(app.state, "onnxcam", False):
        return
    app.state.onnxcam = True
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_exception_handler(RequestValidationError, _validation_error)


class _Server(model_server.ModelServer):
    """KServe's server, bound to `host` (KServe itself always binds 0.0.0.0)."""

    host = "127.0.0.1"

    def setup_event_loop(self):  # start() calls this after building its REST server and before serving
        rest = self._rest_server or self._rest_multiprocess_server._rest_server
        rest.config.host = self.host
        super().setup_event_loop()


def serve(model: ExplainerModel, port: int = 8080, host: str = "127.0.0.1", workers: int = 1) -> None:
    """Loads the model (sessions built, start-up checked) and serves V1 and V2 REST on host:port until a signal."""
    install(model_server.app)
    model.load()
    server = _Server(http_port=port, workers=workers, enable_grpc=False, enable_latency_logging=False)
    server.host = host
    server.start([model])
