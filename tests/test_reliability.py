"""One Explainer shared by threads (the inference-server pattern) gives exactly the serial results."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import onnxcam
from onnxcam.image import Preprocessing, read_rgb

ROOT = Path(__file__).resolve().parents[1]
CALLS = [
    ("gradcam", {}), ("gradcam++", {}), ("layercam", {}), ("xgradcam", {}),
    ("rsi-gradcam", {"steps": 4, "batch_size": 3}), ("integrated-gradcam", {"steps": 3}),
    ("smooth-gradcam++", {"samples": 2, "seed": 1}), ("saliency", {}),
]


def images() -> np.ndarray:
    prep = Preprocessing((224, 224), (0.5,) * 3, (0.5,) * 3)
    return np.stack([prep(read_rgb(p))[0] for p in sorted((ROOT / "models" / "samples").glob("*.jpg"))])


def test_threads_share_one_explainer_and_match_serial_results():
    x = images()
    serial = onnxcam.Explainer(ROOT / "models" / "efficientnet_lite0.onnx")
    expected = {m: serial.explain(x, method=m, **o).heatmap for m, o in CALLS}
    shared = onnxcam.Explainer(ROOT / "models" / "efficientnet_lite0.onnx")  # sessions built under concurrent first use
    jobs = [CALLS[(t + k) % len(CALLS)] for t in range(8) for k in range(20)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: (job[0], shared.explain(x, method=job[0], **job[1]).heatmap), jobs))
    for method, heatmap in results:
        np.testing.assert_array_equal(heatmap, expected[method], err_msg=method)


def test_same_seed_gives_bit_identical_maps():
    x = images()
    ex = onnxcam.Explainer(ROOT / "models" / "efficientnet_lite0.onnx")
    for method, options in CALLS:
        a, b = ex.explain(x, method=method, **options), ex.explain(x, method=method, **options)
        np.testing.assert_array_equal(a.heatmap, b.heatmap, err_msg=method)
