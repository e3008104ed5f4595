"""`onnxcam serve` in a real subprocess on 127.0.0.1: V1 and V2 answers equal the Explainer's, concurrent requests
never mix, and every bad request gets a one-line 400 while the server keeps answering."""

import base64
import http.client
import importlib.util
import json
import socket
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import onnxcam
from onnxcam.cli import main
from onnxcam.image import model_preprocessing, overlay, png_bytes, read_rgb
from onnxcam.opencv import cv2

pytestmark = pytest.mark.skipif(importlib.util.find_spec("kserve") is None, reason="needs the serve extra (kserve)")

ROOT = Path(__file__).resolve().parents[1]
PHOTO_MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
CAT = ROOT / "models" / "samples" / "cat.jpg"
START_TIMEOUT = 90  # seconds for a server to load its model and answer (2 shared cores, two servers starting)


class Server:
    """An `onnxcam serve` subprocess on a free 127.0.0.1 port, its log in a file (a full pipe would block it)."""

    def __init__(self, model: Path, name: str, log: Path, *args: str):
        self.name, self.log = name, log
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [sys.executable, "-m", "onnxcam", "serve", str(model), "--port", str(self.port),
                   *(a.format(port=self.port) for a in args)]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"onnxcam serve exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if self.get(f"/v1/models/{self.name}")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"onnxcam serve not ready after {START_TIMEOUT} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body, {"content-type": "application/json"} if body is not None else {})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def post(self, path: str, body: dict | bytes) -> tuple[int, dict]:
        return self.request("POST", path, body if isinstance(body, bytes) else json.dumps(body).encode())

    def v1(self, verb: str, body: dict | bytes) -> tuple[int, dict]:
        return self.post(f"/v1/models/{self.name}:{verb}", body)

    def v2(self, body: dict | bytes) -> tuple[int, dict]:
        return self.post(f"/v2/models/{self.name}/infer", body)


@pytest.fixture(scope="module")
def servers(model, tmp_path_factory):
    """Both servers start at once (their start-ups overlap): the photo model named by its stem, the small CNN with the
    arguments KServe appends to an explainer container's (its --http_port repeats our --port)."""
    logs = tmp_path_factory.mktemp("serve")
    started = [Server(PHOTO_MODEL, "efficientnet_lite0", logs / "photo.log")]
    kserve_args = ["--model_name", "cnn", "--predictor_host", "cnn-predictor.default", "--http_port", "{port}"]
    started.append(Server(model, "cnn", logs / "cnn.log", *kserve_args))
    try:
        for s in started:
            s.wait_ready()
        yield {"photo": started[0], "cnn": started[1]}
    finally:
        for s in started:
            s.stop()


@pytest.fixture(scope="module")
def photo():
    """The cat photo as `onnxcam explain` prepares it, and the in-process Explainer that the server must equal."""
    ex = onnxcam.Explainer(PHOTO_MODEL)
    prep = model_preprocessing(ex.model)
    x, view = prep(read_rgb(CAT))
    return ex, x, view


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_instance(data: bytes) -> dict:
    return {"image_bytes": {"b64": b64(data)}}


def top5(logits: np.ndarray) -> tuple[list[int], np.ndarray]:
    p = np.exp(logits.astype(np.float64) - logits.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[:5]
    return order.tolist(), p[order]


def test_models_are_listed_by_stem_or_name(servers):
    assert servers["photo"].get("/v1/models") == (200, {"models": ["efficientnet_lite0"]})
    assert servers["cnn"].get("/v1/models") == (200, {"models": ["cnn"]})


def test_v1_explain_of_a_photo_equals_the_explainer(servers, photo):
    ex, x, view = photo
    expected = ex.explain(x[None], method="gradcam")
    status, body = servers["photo"].v1("explain", {"instances": [image_instance(CAT.read_bytes())],
                                                   "parameters": {"overlay": True}})
    assert status == 200, body
    item = body["explanations"][0]
    assert body["method"] == "gradcam" and body["layer"] == ex.layer.name
    assert np.abs(np.asarray(item["heatmap"], np.float32) - expected.heatmap[0]).max() <= 1e-6
    assert item["target"] == int(expected.target[0])
    classes, scores = top5(expected.logits[0])
    assert item["classes"] == classes and np.allclose(item["scores"], scores, atol=1e-6)
    png = cv2.imdecode(np.frombuffer(base64.b64decode(item["overlay_png"]), np.uint8), cv2.IMREAD_COLOR)
    wanted = cv2.imdecode(np.frombuffer(png_bytes(overlay(view, expected.heatmap[0])), np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(png.astype(int) - wanted.astype(int)).max() <= 1  # the same overlay, up to a rounding step

    status, tensor = servers["photo"].v1("explain", {"instances": [x.tolist()], "parameters": {"target": 285}})
    assert status == 200, tensor
    again = ex.explain(x[None], method="gradcam", target=285)
    assert tensor["explanations"][0]["target"] == 285
    assert np.abs(np.asarray(tensor["explanations"][0]["heatmap"], np.float32) - again.heatmap[0]).max() <= 1e-6

    status, both = servers["photo"].v1("explain", {"instances": [x.tolist(), x.tolist()], "parameters": {"target": [-1, 285]}})
    assert status == 200 and [e["target"] for e in both["explanations"]] == [int(expected.target[0]), 285]  # -1: top-1

    status, predicted = servers["photo"].v1("predict", {"instances": [image_instance(CAT.read_bytes())]})
    assert status == 200 and predicted["predictions"][0]["classes"] == classes
    assert np.allclose(predicted["predictions"][0]["scores"], scores, atol=1e-6)


def test_v2_infer_of_a_photo_equals_the_explainer(servers, photo):
    ex, x, _ = photo
    expected = ex.explain(x[None], method="gradcam++")
    image = {"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(CAT.read_bytes())]}
    status, body = servers["photo"].v2({"inputs": [image], "parameters": {"method": "gradcam++"}})
    assert status == 200, body
    out = {o["name"]: o for o in body["outputs"]}
    assert out["heatmap"]["shape"] == [1, 224, 224] and out["heatmap"]["datatype"] == "FP32"
    heatmap = np.asarray(out["heatmap"]["data"], np.float32).reshape(out["heatmap"]["shape"])
    assert np.abs(heatmap - expected.heatmap).max() <= 1e-6
    assert out["target"]["data"] == [int(expected.target[0])] and out["classes"]["data"] == top5(expected.logits[0])[0]

    tensor = {"name": "input", "shape": [1, *x.shape], "datatype": "FP32", "data": x.ravel().tolist()}
    target = {"name": "target", "shape": [1], "datatype": "INT64", "data": [281]}
    status, body = servers["photo"].v2({"inputs": [tensor, target], "outputs": [{"name": "heatmap"}]})
    assert status == 200, body
    assert [o["name"] for o in body["outputs"]] == ["heatmap"]
    heatmap = np.asarray(body["outputs"][0]["data"], np.float32).reshape(1, 224, 224)
    assert np.abs(heatmap - ex.explain(x[None], method="gradcam", target=281).heatmap).max() <= 1e-6


def test_concurrent_requests_with_mixed_methods_each_get_their_own_answer(servers, model):
    cnn = servers["cnn"]
    methods = [("gradcam", {}), ("gradcam++", {}), ("rsi-gradcam", {"steps": 3}), ("saliency", {})]
    rng = np.random.default_rng(7)
    bodies = []
    for i in range(50):
        method, options = methods[i % len(methods)]
        x = rng.standard_normal((3, 32, 32)).astype(np.float32)
        params = {"method": method, **options, **({"target": i % 10} if i % 3 else {})}
        bodies.append({"instances": [x.tolist()], "parameters": params})
    single = [cnn.v1("explain", b) for b in bodies]  # one at a time: each request's own answer
    assert all(status == 200 for status, _ in single), [b for s, b in single if s != 200][:1]
    ex = onnxcam.Explainer(model)
    for body, (_, answer) in zip(bodies[:4], single):  # and those answers are the Explainer's
        p = body["parameters"]
        res = ex.explain(np.asarray(body["instances"], np.float32), method=p["method"], target=p.get("target"),
                         **({"steps": p["steps"]} if "steps" in p else {}))
        assert np.abs(np.asarray(answer["explanations"][0]["heatmap"], np.float32) - res.heatmap[0]).max() <= 1e-6
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda b: cnn.v1("explain", b), bodies))
    for i, ((status, answer), (_, alone)) in enumerate(zip(together, single)):
        assert status == 200, answer
        assert answer == alone, f"request {i} ({bodies[i]['parameters']}) got another answer under concurrency"
    distinct = {json.dumps(a["explanations"][0]["heatmap"]) for _, a in single}
    assert len(distinct) == len(single)  # so a mixed-up answer could not go unnoticed


def test_v2_binary_outputs_carry_the_same_tensors(servers):
    cnn = servers["cnn"]
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    image = {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    status, as_json = cnn.v2({"inputs": [image], "parameters": {"method": "layercam"}})
    assert status == 200, as_json
    conn = http.client.HTTPConnection("127.0.0.1", cnn.port, timeout=120)
    body = {"inputs": [image], "parameters": {"method": "layercam", "binary_data_output": True}}
    conn.request("POST", "/v2/models/cnn/infer", json.dumps(body), {"content-type": "application/json"})
    response = conn.getresponse()
    data, size = response.read(), int(response.getheader("inference-header-content-length"))
    conn.close()
    offset = size
    for output, expected in zip(json.loads(data[:size])["outputs"], as_json["outputs"]):
        n = output["parameters"]["binary_data_size"]
        dtype = {"FP32": np.float32, "INT64": np.int64}[output["datatype"]]
        values = np.frombuffer(data[offset : offset + n], dtype)
        offset += n
        assert output["shape"] == expected["shape"] and values.tolist() == np.asarray(expected["data"], dtype).tolist()
    assert offset == len(data)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none: the header cap must refuse it unread."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def _bad_requests() -> list[tuple[str, object, str]]:
    good = [0.0] * 3 * 32 * 32
    tensor = np.zeros((3, 32, 32)).tolist()
    v2_tensor = {"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": good}
    return [
        ("explain", b"not json", "Unrecognized request format"),
        ("explain", {"images": []}, '{"instances": [...]}'),
        ("explain", {"instances": []}, "at least one instance"),
        ("explain", {"instances": [image_instance(b"hello, not an image")]}, "cannot read image in instance 0"),
        ("explain", {"instances": [{"image_bytes": {"b64": "%%%"}}]}, "not valid base64"),
        ("explain", {"instances": [image_instance(_png_header(40000, 40000))]}, "declares 40000x40000 pixels"),
        ("explain", {"instances": [{"image": "x"}]}, "image_bytes"),
        ("explain", {"instances": [[[1.0, 2.0], [3.0]]]}, "not an image and not a tensor"),
        ("explain", {"instances": [np.zeros((3, 224, 224)).tolist()]}, "shape (3, 224, 224)"),
        ("explain", {"instances": [tensor] * 33}, "33 instances"),
        ("explain", {"instances": [tensor], "parameters": {"method": "gradcamm"}}, "unknown method 'gradcamm'"),
        ("explain", {"instances": [tensor], "parameters": {"target": 10}}, "out of range"),
        ("explain", {"instances": [tensor], "parameters": {"target": [1, 2]}}, "2 classes for 1 instances"),
        ("explain", {"instances": [tensor], "parameters": {"target": "cat"}}, "parameter target"),
        ("explain", {"instances": [tensor], "parameters": {"method": "rsi-gradcam", "steps": 0}}, "parameter steps"),
        ("explain", {"instances": [tensor], "parameters": {"steps": 4}}, "does not apply to gradcam"),
        ("explain", {"instances": [tensor], "parameters": {"colour": "red"}}, "unknown parameter 'colour'"),
        ("predict", {"instances": [tensor], "parameters": {"top_k": 0}}, "top_k"),
        ("v2", {"inputs": [{"name": "input", "shape": [1]}]}, "invalid V2 request"),
        ("v2", {"inputs": [{**v2_tensor, "data": [1.0, 2.0]}]}, "do not fit"),
        ("v2", {"inputs": [{**v2_tensor, "datatype": "INT8"}]}, "datatype INT8"),
        ("v2", {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}]}, "cannot read image"),
        ("v2", {"inputs": [v2_tensor, {"name": "target", "shape": [1], "datatype": "INT64", "data": [99]}]},
         "out of range"),
        ("v2", {"inputs": [v2_tensor], "outputs": [{"name": "saliency"}]}, "saliency"),
    ]


def test_bad_requests_get_one_line_400s_and_the_server_keeps_answering(servers):
    cnn = servers["cnn"]
    for verb, body, expected in _bad_requests():
        status, answer = cnn.v2(body) if verb == "v2" else cnn.v1(verb, body)
        assert status == 400, (verb, expected, status, answer)
        assert expected in answer["error"] and "\n" not in answer["error"], (expected, answer)
    with socket.create_connection(("127.0.0.1", cnn.port), timeout=30) as s:  # refused before a byte of body is read
        s.sendall(f"POST /v1/models/cnn:explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {40 << 20}\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(4096):  # headers and body may come in separate segments; the server closes after them
            reply += chunk
    reply = reply.decode()
    assert reply.startswith("HTTP/1.1 400") and "over the limit of 33554432" in reply
    status, answer = cnn.v1("explain", {"instances": [np.ones((3, 32, 32)).tolist()]})
    assert status == 200 and len(answer["explanations"][0]["heatmap"]) == 32
    assert cnn.process.poll() is None


def test_workers_each_load_the_model_and_keep_the_limits(model, tmp_path):
    server = Server(model, "small-cnn", tmp_path / "workers.log", "--workers", "2", "--name", "small-cnn")
    try:
        server.wait_ready()
        body = {"instances": [np.ones((3, 32, 32)).tolist()], "parameters": {"method": "saliency"}}
        answers = [server.v1("explain", body) for _ in range(4)]
        assert all(status == 200 for status, _ in answers) and all(a == answers[0] for a in answers)
        for _ in range(4):  # requests land on either process: each must refuse an oversized body unread
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
                s.sendall(f"POST /v1/models/small-cnn:explain HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Content-Length: {40 << 20}\r\n\r\n".encode())
                assert s.recv(4096).startswith(b"HTTP/1.1 400")
    finally:
        server.stop()


def test_serve_without_kserve_says_what_to_install(monkeypatch, model):
    monkeypatch.setitem(sys.modules, "kserve", None)  # import kserve now fails, as where it is not installed
    monkeypatch.delitem(sys.modules, "onnxcam.serve", raising=False)
    result = CliRunner().invoke(main, ["serve", str(model)])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "pip install 'onnxcam[serve]'" in result.output


def test_onnxcam_imports_without_kserve():
    code = "import sys; sys.modules['kserve'] = None; import onnxcam, onnxcam.cli; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout == "ok\n"
