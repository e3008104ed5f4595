"""Benchmark `onnxcam serve`: requests/s and p50/p99 latency of V1 :explain with Grad-CAM against plain :predict.

    python tools/bench_serve.py                                  # 3 rounds x 100 requests per cell
    python tools/bench_serve.py --requests 200 --rounds 3 --output bench-serve.md

The script starts `onnxcam serve` on the shipped EfficientNet-Lite0 (127.0.0.1, a free port, one worker), sends
the shipped cat photo as {"image_bytes": {"b64": ...}} (so each request decodes, resizes and normalizes a JPEG,
as a client's would be), and times whole HTTP round trips from client threads that keep one connection each.
Cells: :predict (top-5 only: the baseline) and :explain with gradcam (top-5 and the 224x224 heatmap as JSON), at
concurrency 1 and 8. The cells run in interleaved rounds, so a change of machine load hits them alike; the
latencies of all rounds are pooled for p50/p99, and requests/s is requests over the cell's summed wall time.
The clients share the machine with the server: on 2 cores they take CPU from it (reading ~1 MB of heatmap JSON).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from benchlib import cpu_name, loadavg

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
IMAGE = ROOT / "models" / "samples" / "cat.jpg"
START_TIMEOUT = 120  # seconds for the server to load the model and answer


@dataclass
class Cell:
    """One (verb, concurrency) configuration and its measured round trips."""

    verb: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0

    @property
    def label(self) -> str:
        return "predict" if self.verb == "predict" else "explain (gradcam)"

    def row(self) -> dict:
        ms = np.asarray(self.latencies) * 1e3
        return {"verb": self.label, "concurrency": self.concurrency, "requests": len(ms),
                "requests_per_s": len(ms) / self.wall, "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "onnxcam", "serve", str(MODEL), "--port", str(port), "--method", "gradcam"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"onnxcam serve exited: {log.read_text()[-1000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", f"/v1/models/{MODEL.stem}")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"onnxcam serve not ready after {START_TIMEOUT} s")


def client(port: int, verb: str, body: bytes, n: int) -> list[float]:
    """n round trips on one keep-alive connection; the body is read whole but not parsed (a client's bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    path = f"/v1/models/{MODEL.stem}:{verb}"
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            conn.request("POST", path, body, {"content-type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            times.append(time.perf_counter() - t)
            if response.status != 200:
                raise SystemExit(f"{verb}: HTTP {response.status}: {data[:300]!r}")
    finally:
        conn.close()
    return times


def run_cell(cell: Cell, port: int, body: bytes, requests: int) -> None:
    """`requests` round trips split over `concurrency` client threads."""
    shares = [requests // cell.concurrency + (i < requests % cell.concurrency) for i in range(cell.concurrency)]
    t = time.perf_counter()
    with ThreadPoolExecutor(cell.concurrency) as pool:
        for times in pool.map(lambda k: client(port, cell.verb, body, k), shares):
            cell.latencies.extend(times)
    cell.wall += time.perf_counter() - t


def table(rows: list[dict]) -> str:
    base = {r["concurrency"]: r for r in rows if r["verb"] == "predict"}
    lines = ["| request | concurrency | requests | requests/s | p50 ms | p99 ms | p50 vs predict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["p50_ms"] / base[r["concurrency"]]["p50_ms"]
        lines.append(f"| {r['verb']} | {r['concurrency']} | {r['requests']} | {r['requests_per_s']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {ratio:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests per cell and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the cells")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--output", type=Path, default=None, help="also write the report (markdown) here")
    args = parser.parse_args()

    payload = {"instances": [{"image_bytes": {"b64": base64.b64encode(IMAGE.read_bytes()).decode("ascii")}}]}
    bodies = {"predict": json.dumps(payload).encode(),
              "explain": json.dumps({**payload, "parameters": {"method": "gradcam"}}).encode()}
    cells = [Cell(verb, c) for c in args.concurrency for verb in ("predict", "explain")]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        process = start_server(port, Path(tmp) / "serve.log")
        try:
            load_before = loadavg()
            for verb in bodies:  # warm-up: sessions, allocator, connection paths
                client(port, verb, bodies[verb], 10)
            for r in range(args.rounds):
                for cell in cells:
                    run_cell(cell, port, bodies[cell.verb], args.requests)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
            load_after = loadavg()
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    rows = [c.row() for c in cells]
    report = "\n".join([
        f"Command: `python tools/bench_serve.py --requests {args.requests} --rounds {args.rounds}"
        f" --concurrency {' '.join(map(str, args.concurrency))}`",
        f"Machine: {cpu_name()}, {len(__import__('os').sched_getaffinity(0))} cores, no GPU; "
        f"load average {load_before} before, {load_after} after",
        f"Server: `onnxcam serve {MODEL.relative_to(ROOT)}` (1 worker), image {IMAGE.relative_to(ROOT)} per request",
        "",
        table(rows),
    ])
    print(report)
    if args.output:
        args.output.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
