"""Throughput of onnxcam.ray on this machine: images/s with 1 and 2 local workers against the in-process loop.

Each Ray configuration explains the first 8 images, then all, with the demo model into fresh folders; each run
starts its actors and loads the model anew (Ray itself is started once, before), so the difference of the two
prices the images alone (img/s) and the rest is start-up. The per-row time, from the actors' own per-image
`seconds`, is what docs/scale.md's cluster cost model takes.

    python tools/bench_ray.py                      # ../shared/data/imagenet-sample, gradcam and rsi-gradcam 16 steps
    python tools/bench_ray.py --limit 20 --methods gradcam
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from benchlib import cpu_name, loadavg  # noqa: E402

MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
SAMPLE = ROOT.parent / "shared" / "data" / "imagenet-sample"
SMALL = 8  # images of the short run that prices the start-up
ROWS = {"gradcam": lambda steps: 1, "rsi-gradcam": lambda steps: steps + 2, "ig": lambda steps: steps + 1,
        "integrated-gradcam": lambda steps: steps + 1}  # network passes per image: res.extras["rows"], all kinds


def images(limit: int | None) -> list[str]:
    found = sorted([*SAMPLE.glob("*.jpg"), *SAMPLE.glob("*.JPEG")]) if SAMPLE.is_dir() else []
    found = found or sorted((ROOT / "models" / "samples").glob("*.jpg"))
    return [str(p) for p in found[:limit]]


def in_process(paths: list[str], method: str, options: dict) -> tuple[float, float]:
    """(images/s, start-up seconds) of the loop `onnxcam explain` runs: one Explainer, ORT's default threads."""
    from onnxcam import Explainer
    from onnxcam.image import model_preprocessing, read_rgb

    start = time.perf_counter()
    ex = Explainer(MODEL, device="cpu")
    prep = model_preprocessing(ex.model)
    ex.explain(prep(read_rgb(paths[0]))[0][None], method=method, **options)  # builds the sessions
    ready = time.perf_counter()
    for p in paths:
        x, _ = prep(read_rgb(p))
        ex.explain(x[None], method=method, **options)
    return len(paths) / (time.perf_counter() - ready), ready - start


def on_ray(paths: list[str], method: str, options: dict, workers: int) -> tuple[float, float, float]:
    """(images/s once running, start-up seconds, median seconds per image inside an actor), from a run on the first
    SMALL images and one on all: each run starts its actors and loads the model anew."""
    from onnxcam import ray as onnxcam_ray

    times, per_image = [], []
    for subset in (paths[:SMALL], paths):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            r = onnxcam_ray.explain_dataset(subset, MODEL, [method], out, device="cpu", concurrency=workers,
                                            num_cpus=2 / workers, batch_images=4, **options)
            times.append(time.perf_counter() - start)
            per_image += onnxcam_ray.read_results(out, settings_key=r.settings_key, columns=["seconds"])["seconds"].to_pylist()
    rate = (len(paths) - SMALL) / (times[1] - times[0])
    return rate, times[0] - SMALL / rate, statistics.median(per_image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--methods", nargs="+", default=["gradcam", "rsi-gradcam"])
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()

    import ray

    paths = images(args.limit)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="error", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(f"{len(paths)} images, {MODEL.name}, CPU: {cpu_name()}, load before: {loadavg()}, Ray {ray.__version__}\n")
    print("| method | rows/image | in-process (2 threads) | Ray, 1 worker × 2 CPUs | Ray, 2 workers × 1 CPU "
          "| ms/row in a 1-CPU worker |")
    print("|---|---:|---:|---:|---:|---:|")
    for method in args.methods:
        options = {"steps": args.steps} if method != "gradcam" else {}
        rows = ROWS[method](args.steps)
        base = in_process(paths, method, options)
        one = on_ray(paths, method, options, 1)
        two = on_ray(paths, method, options, 2)
        cells = [f"{rate:.2f} img/s (start {start:.1f} s)" for rate, start, *_ in (base, one, two)]
        name = method + (f" ({args.steps} steps)" if options else "")
        print(f"| {name} | {rows} | {' | '.join(cells)} | {1000 * two[2] / rows:.0f} |", flush=True)
    print(f"\nload after: {loadavg()}")
    ray.shutdown()


if __name__ == "__main__":
    main()
