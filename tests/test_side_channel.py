"""The committed side-channel CNN (tools/side_channel.py): onnxcam's Class Gradient Visualization (saliency) and IG
equal torch.autograd and Captum on its torch twin, with the weights read back from the ONNX file; CGV points at the
simulated leakage far more than a random map does; the README's command explains the sample traces."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from captum.attr import IntegratedGradients
from click.testing import CliRunner
from onnx import numpy_helper

import onnxcam
from onnxcam.cli import main
from onnxcam.metrics import top_k_pointing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import side_channel as sc  # noqa: E402

MODEL, TRACES = ROOT / "models" / "side_channel_cnn.onnx", ROOT / "models" / "samples" / "traces.npy"


@pytest.fixture(scope="module")
def twin() -> torch.nn.Module:
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(MODEL).graph.initializer}
    model = sc.torch_net()()
    state = model.state_dict()
    assert set(state) <= set(inits), f"weights missing from the ONNX file: {sorted(set(state) - set(inits))}"
    model.load_state_dict({k: torch.from_numpy(inits[k].copy()).reshape(v.shape) for k, v in state.items()})
    return model.eval()


def test_the_model_says_where_it_leaks():
    props = {p.key: p.value for p in onnx.load(MODEL).metadata_props}
    assert tuple(int(v) for v in props["onnxcam.leakage_points"].split(",")) == sc.LEAKS


def test_cgv_and_ig_equal_autograd_and_captum(twin):
    x = np.load(TRACES)
    ex = onnxcam.Explainer(str(MODEL))
    logits = ex.outputs_at(x)
    with torch.no_grad():
        assert np.abs(logits - twin(torch.from_numpy(x)).numpy()).max() <= 1e-4
    target = logits.argmax(1)
    xt = torch.from_numpy(x).requires_grad_()
    twin(xt)[torch.arange(len(x)), torch.from_numpy(target)].sum().backward()
    cgv = ex.explain(x, method="saliency").attribution
    assert np.abs(cgv - xt.grad.numpy()).max() <= 1e-5 * np.abs(xt.grad.numpy()).max()
    ig = ex.explain(x, method="ig", steps=16, baseline=0.0).attribution
    ref = IntegratedGradients(twin).attribute(torch.from_numpy(x), target=target.tolist(), n_steps=16).numpy()
    assert np.abs(ig - ref).max() <= 1e-4 * np.abs(ref).max()


def test_cgv_points_at_the_leakage_more_than_a_random_map():
    attack = sc.simulate(64, seed=123, key=sc.ATTACK_KEY)
    masks = sc.leak_mask(attack["shift"])
    cgv = top_k_pointing(onnxcam.Explainer(str(MODEL)).explain(attack["traces"], "saliency").heatmap, masks, sc.TOP)
    chance = top_k_pointing(np.random.default_rng(0).random(masks.shape), masks, sc.TOP)
    se = np.hypot(cgv.std(ddof=1), chance.std(ddof=1)) / np.sqrt(len(cgv))
    assert cgv.mean() - chance.mean() > 5 * se


def test_explain_command_on_the_sample_traces(tmp_path):
    result = CliRunner().invoke(main, ["explain", str(MODEL), str(TRACES), "-m", "saliency", "-m", "ig", "--steps", "8",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    n = len(np.load(TRACES))
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [Path(r["image"]).name for r in records] == [f"traces#{k}.npy" for k in range(n)]
    assert all((tmp_path / f"traces_{k}_montage.png").is_file() for k in range(n))
    maps = np.concatenate([np.load(tmp_path / f"traces_{k}_saliency.npy") for k in range(n)])
    assert maps.shape == (n, sc.LENGTH)
