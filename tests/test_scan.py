"""The scan: every implementation against the sequential reference, gradients, accuracy at length, bad input."""

from __future__ import annotations

import pytest
import torch

from decision_minrnn.nn.scan import SCAN_IMPLS, gated_scan, resolve_impl, scan, scan_log

IMPLS = list(SCAN_IMPLS)


def _inputs(batch, length, dim, dtype=torch.float64, signed=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(batch, length, dim, generator=gen, dtype=dtype) * 0.98 + 0.01
    b = torch.randn(batch, length, dim, generator=gen, dtype=dtype)
    if not signed:
        b = b.abs() + 0.01
    h0 = torch.randn(batch, dim, generator=gen, dtype=dtype)
    return a, b, h0


def _loop(a, b, h0):
    """Independent scalar-by-step reference written with explicit indexing (small sizes only)."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.clone()
    out = torch.empty_like(b)
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out[:, t] = h
    return out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("length", [1, 2, 7, 63, 64, 65, 131])
@pytest.mark.parametrize("with_h0", [False, True])
def test_every_impl_matches_reference_float64(impl, length, with_h0):
    a, b, h0 = _inputs(3, length, 5)
    h0 = h0 if with_h0 else None
    ref = _loop(a, b, h0)
    assert (scan(a, b, h0, impl=impl) - ref).abs().max().item() <= 1e-9
    assert (scan(None, b, h0, log_a=a.log(), impl=impl) - ref).abs().max().item() <= 1e-9
    bp = b.abs() + 0.1
    hp = None if h0 is None else h0.abs()
    assert (scan_log(a.log(), bp.log(), hp, impl=impl) - _loop(a, bp, hp)).abs().max().item() <= 1e-9


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_length_and_broadcast_decay(impl):
    a, b, h0 = _inputs(2, 0, 4)
    assert scan(a, b, h0, impl=impl).shape == (2, 0, 4)
    a, b, h0 = _inputs(2, 9, 4)
    decay = a[:1, :1].expand(2, 9, 4)  # a time-invariant decay given as a broadcast view (S4D)
    assert torch.allclose(scan(decay, b, h0, impl=impl), _loop(decay.contiguous(), b, h0), atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_accuracy_at_episode_length(impl):
    # Decays close to 1 make the state long-lived: the hard case for a log-space scan in float32.
    gen = torch.Generator().manual_seed(1)
    length = 3000
    a = 1 - torch.rand(2, length, 8, generator=gen, dtype=torch.float64) * 0.05
    b = torch.rand(2, length, 8, generator=gen, dtype=torch.float64) * 0.05
    h0 = torch.rand(2, 8, generator=gen, dtype=torch.float64)
    ref = _loop(a, b, h0)
    got = scan_log(a.log().float(), b.log().float(), h0.float(), impl=impl).double()
    assert torch.isfinite(got).all()
    assert ((got - ref).abs().max() / ref.abs().max()).item() <= 1e-4
    signed_b = b - 0.025
    got = scan(a.float(), signed_b.float(), h0.float(), impl=impl).double()
    ref = _loop(a, signed_b, h0)
    assert ((got - ref).abs().max() / ref.abs().max()).item() <= 1e-4


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("h0_kind", ["none", "zero", "random"])
def test_gradcheck(impl, h0_kind):
    a, b, h0 = _inputs(2, 6, 3)
    a.requires_grad_(True)
    b.requires_grad_(True)
    if h0_kind == "none":
        assert torch.autograd.gradcheck(lambda a, b: scan(a, b, None, impl=impl), (a, b))
        return
    h0 = torch.zeros_like(h0) if h0_kind == "zero" else h0
    h0.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, h0: scan(a, b, h0, impl=impl), (a, b, h0))
    # the positive (log-input) entry point, including a zero initial state
    la = a.detach().log().requires_grad_(True)
    lb = b.detach().abs().add(0.1).log().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda la, lb, h0: scan_log(la, lb, h0, impl=impl), (la, lb, h0))


def test_gradients_equal_between_impls():
    a, b, h0 = _inputs(3, 50, 4)
    weights = torch.randn_like(b)
    grads = {}
    for impl in IMPLS:
        leaves = [t.clone().requires_grad_(True) for t in (a, b, h0)]
        (scan(*leaves, impl=impl) * weights).sum().backward()
        grads[impl] = [t.grad for t in leaves]
    for impl in IMPLS[1:]:
        for g_ref, g in zip(grads["sequential"], grads[impl]):
            assert (g - g_ref).abs().max().item() <= 1e-9


def test_bad_input_is_named():
    a, b, h0 = _inputs(2, 5, 3)
    with pytest.raises(ValueError, match="unknown scan implementation 'fast'"):
        scan(a, b, h0, impl="fast")
    with pytest.raises(ValueError, match=r"\(batch, time, dim\)"):
        scan(a[0], b[0])
    with pytest.raises(ValueError, match="initial state"):
        scan(a, b, h0[:1])
    with pytest.raises(ValueError, match="exactly one of a and log_a"):
        scan(a, b, log_a=a.log())


def test_auto_picks_cpu_path_on_cpu():
    assert resolve_impl("auto", torch.device("cpu")) == "cpu"
    with pytest.raises(ValueError, match="unknown scan implementation None"):
        resolve_impl(None, torch.device("cpu"))
    assert resolve_impl("auto", torch.device("cuda")) == "log"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("length", [1, 16, 17, 50])
def test_gated_scan_matches_reference_and_gradcheck(impl, length):
    """The minGRU/minLSTM recurrence (the fused CPU kernel included) against the formula, values and gradients."""
    gen = torch.Generator().manual_seed(length)
    k = torch.randn(2, length, 3, generator=gen, dtype=torch.float64) * 3
    c = torch.randn(2, length, 3, generator=gen, dtype=torch.float64) * 3
    h0 = torch.rand(2, 3, generator=gen, dtype=torch.float64)
    z = torch.sigmoid(k)
    g_c = torch.where(c >= 0, c + 0.5, torch.sigmoid(c))  # g written out from its definition
    ref = _loop(1 - z, z * g_c, h0)
    assert (gated_scan(k, c, h0, impl=impl) - ref).abs().max().item() <= 1e-9
    assert (gated_scan(k, c, None, impl=impl) - _loop(1 - z, z * g_c, None)).abs().max().item() <= 1e-9
    leaves = [t.clone().requires_grad_(True) for t in (k, c, h0)]
    assert torch.autograd.gradcheck(lambda k, c, h0: gated_scan(k, c, h0, impl=impl), leaves)
    zero = torch.zeros_like(h0, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k, c, h0: gated_scan(k, c, h0, impl=impl), (leaves[0], leaves[1], zero))


def test_gated_scan_gradients_equal_between_impls():
    gen = torch.Generator().manual_seed(5)
    k, c = (torch.randn(3, 70, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    h0 = torch.rand(3, 4, generator=gen, dtype=torch.float64)
    weights = torch.randn(3, 70, 4, generator=gen, dtype=torch.float64)
    grads = {}
    for impl in IMPLS:
        leaves = [t.clone().requires_grad_(True) for t in (k, c, h0)]
        (gated_scan(*leaves, impl=impl) * weights).sum().backward()
        grads[impl] = [t.grad for t in leaves]
    for impl in IMPLS[1:]:
        for g_ref, g_impl in zip(grads["sequential"], grads[impl]):
            assert (g_impl - g_ref).abs().max().item() <= 1e-9


@pytest.mark.parametrize("impl", IMPLS)
def test_normalized_gate_scan_matches_minlstm_formula(impl):
    """minLSTM: f' = f / (f + i), i' = i / (f + i), h_t = f' h_{t-1} + i' g(c), from the paper's definition."""
    gen = torch.Generator().manual_seed(11)
    k_f, k_i, c = (torch.randn(2, 37, 3, generator=gen, dtype=torch.float64) * 2 for _ in range(3))
    h0 = torch.rand(2, 3, generator=gen, dtype=torch.float64)
    f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
    g_c = torch.where(c >= 0, c + 0.5, torch.sigmoid(c))
    ref = _loop(f / (f + i), i / (f + i) * g_c, h0)
    assert (gated_scan(k_f, c, h0, impl=impl, input_logit=k_i) - ref).abs().max().item() <= 1e-9
    leaves = [t.clone().requires_grad_(True) for t in (k_f, c, h0, k_i)]
    assert torch.autograd.gradcheck(
        lambda k_f, c, h0, k_i: gated_scan(k_f, c, h0, impl=impl, input_logit=k_i), [t[:, :20] if t.dim() == 3 else t
                                                                                   for t in leaves])
