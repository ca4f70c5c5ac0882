"""What must also hold on a GPU: the scans' gradients, and training then acting with every backbone.

Parametrised over `cpu` and `cuda` (marked `cuda`, skipped without a device): `pytest -m cuda` runs the CUDA half
(benchmarks/gpu_check.sh). Only torch is imported: these tests run where gymnasium and MuJoCo are not installed. The
law tests themselves are in test_backbones.py (same device parametrisation) and test_s4_mamba.py.
"""

from __future__ import annotations

import pytest
import torch

from decision_minrnn.nn.backbones import BACKBONES
from decision_minrnn.nn.model import LAYOUTS, ModelConfig, build_model
from decision_minrnn.nn.scan import SCAN_IMPLS, gated_scan, scan, scan_log
from device_params import DEVICES

OBS, ACT = 11, 3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", SCAN_IMPLS)
def test_scan_gradcheck_on_device(device, impl):
    gen = torch.Generator().manual_seed(0)
    a = (torch.rand(2, 6, 3, generator=gen, dtype=torch.float64) * 0.98 + 0.01).to(device).requires_grad_(True)
    b = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    h0 = torch.randn(2, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, h0: scan(a, b, h0, impl=impl), (a, b, h0))
    la = a.detach().log().requires_grad_(True)
    lb = b.detach().abs().add(0.1).log().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda la, lb, h0: scan_log(la, lb, h0, impl=impl), (la, lb, h0))
    k, c = (torch.randn(2, 17, 3, generator=gen, dtype=torch.float64).mul(2).to(device).requires_grad_(True)
            for _ in range(2))
    hp = h0.detach().abs().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda k, c, h: gated_scan(k, c, h, impl=impl), (k, c, hp))


def _batch(device, batch=4, length=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    returns = torch.randn(batch, length, generator=gen)
    states = torch.randn(batch, length, OBS, generator=gen)
    actions = torch.rand(batch, length, ACT, generator=gen) * 2 - 1
    timesteps = torch.arange(length).expand(batch, length).contiguous()
    return [t.to(device) for t in (returns, states, actions, timesteps)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_train_then_act(device, backbone):
    """20 AdamW steps lower the loss on a fixed batch; then acting token by token (`step_tokens`) from the initial
    state gives the actions the parallel forward predicts for the same steps, in both token layouts."""
    for layout in LAYOUTS:
        torch.manual_seed(0)
        cfg = ModelConfig(backbone=backbone, d_model=16, n_layers=2, dropout=0.0, d_state=4, layout=layout,
                          context_len=8)
        model = build_model(cfg, OBS, ACT).to(device).train()
        returns, states, actions, timesteps = _batch(device)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(20):
            pred, _ = model(returns, states, actions, timesteps)
            loss = torch.nn.functional.mse_loss(pred, actions)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(map(lambda v: v == v, losses)) and losses[-1] < 0.8 * losses[0], (layout, losses)
        model.eval()
        with torch.no_grad():
            pred, _ = model(returns, states, actions, timesteps)
            state = model.initial_state(returns.shape[0], device=torch.device(device))
            acted = []
            for t in range(returns.shape[1]):
                prev = actions[:, t - 1] if t else torch.zeros_like(actions[:, 0])
                has_prev = torch.full((returns.shape[0],), t > 0, dtype=torch.bool, device=device)
                a_t, state = model.step_tokens(returns[:, t], states[:, t], timesteps[:, t], prev, has_prev, state)
                acted.append(a_t)
        acted = torch.stack(acted, 1)
        assert acted.shape == pred.shape and torch.isfinite(acted).all()
        assert (acted - pred).abs().max().item() <= 1e-4, (layout, (acted - pred).abs().max().item())
