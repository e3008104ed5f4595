"""A dynamo export with a static batch of 1 — Reshape(allowzero=1) targets and a folded class token concatenated
with the batch rows — is made batch-dynamic, and its gradients at batch 3 equal torch.autograd's."""

import numpy as np
import onnxruntime as ort
import torch

import onnxcam


class TokenNet(torch.nn.Module):
    """Conv features as tokens behind a learned class token, then a linear head: the shapes ViTs export."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4 * 37, 5)
        self.token = torch.nn.Parameter(torch.randn(1, 1, 4))

    def forward(self, x):
        tokens = torch.tanh(self.conv(x)).flatten(2).transpose(1, 2)
        return self.fc(torch.cat([self.token.expand(x.shape[0], -1, -1), tokens], 1).flatten(1))


def test_static_batch_dynamo_export_runs_any_batch(tmp_path):
    torch.manual_seed(0)
    net = TokenNet().eval()
    path = tmp_path / "static.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, 8, 8),), dynamo=True).save(str(path))
    grad_model = onnxcam.gradient_model(str(path), wrt="x")
    grad_model.ir_version = min(grad_model.ir_version, 10)
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    seed = np.eye(5, dtype=np.float32)[[0, 2, 4]]
    _, grads = ort.InferenceSession(grad_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "grad_seed": seed})
    xt = torch.from_numpy(x).double().requires_grad_()
    (ref,) = torch.autograd.grad((net.double()(xt) * torch.from_numpy(seed).double()).sum(), xt)
    np.testing.assert_allclose(grads, ref.numpy(), rtol=1e-4, atol=1e-5 * np.abs(ref.numpy()).max())
