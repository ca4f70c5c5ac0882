"""S4D's convolution mode and Mamba's chunked selective scan against the recurrences they replace (issue 11).

Both are the default (`scan_impl="auto"`) forward; the scans named explicitly keep the old recurrent paths, which are
the references here. Values and gradients in float64, on the CPU and (marked `cuda`) on a GPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decision_minrnn.nn.backbones import make_backbone, set_scan_impl
from decision_minrnn.nn.backbones.s4 import DIRECT_MAX_T
from decision_minrnn.nn.scan import selective_chunk_size, selective_scan
from device_params import DEVICES

F64 = torch.float64


def _grads(out, leaves):
    y, state = out
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(9), dtype=y.dtype).to(y.device)
    loss = (y * weights).sum() + sum(t.sum() for v in state.fields().values() for t in v if t.is_floating_point())
    return torch.autograd.grad(loss, leaves)


def _compare_with(name, reference_impl, lengths, device, **extra):
    torch.manual_seed(0)
    net = make_backbone(name, 8, 2, d_state=4, **extra).to(device, F64)
    gen = torch.Generator().manual_seed(1)
    _, produced = net(torch.randn(2, 5, 8, generator=gen, dtype=F64).to(device))
    produced = produced.detach()
    for length in lengths:
        x = torch.randn(2, length, 8, generator=gen, dtype=F64).to(device).requires_grad_(True)
        for start in (None, produced):
            leaves = [x, *net.parameters()]
            set_scan_impl(net, "auto")
            y, s = net(x, start)
            g = _grads((y, s), leaves)
            set_scan_impl(net, reference_impl)
            y_ref, s_ref = net(x, start)
            g_ref = _grads((y_ref, s_ref), leaves)
            assert (y - y_ref).abs().max().item() <= 1e-10, (length, start is None)
            for k, v in s.fields().items():
                for a, b in zip(v, s_ref.fields()[k]):
                    assert (a - b).abs().max().item() <= 1e-10, (k, length)
            for a, b in zip(g, g_ref):
                assert (a - b).abs().max().item() <= 1e-8 * max(1.0, b.abs().max().item()), length


@pytest.mark.parametrize("device", DEVICES)
def test_s4_convolution_equals_recurrence(device):
    """Direct (Toeplitz) and FFT convolutions, from the zero state and from a produced one: outputs, final state,
    gradients of every parameter and of the input."""
    _compare_with("s4", "sequential", (1, 6, DIRECT_MAX_T, DIRECT_MAX_T + 1, 300), device)


@pytest.mark.parametrize("device", DEVICES)
def test_mamba_chunked_equals_materialised_scan(device):
    """Lengths shorter than, equal to and across chunks (64 steps at these sizes)."""
    assert selective_chunk_size(2, 16, 4) == 64
    _compare_with("mamba", "sequential", (1, 64, 65, 130), device)


def _reference(u, delta, A, B, C, D, z, h0, softplus):
    """The selective SSM written out step by step (shapes as `selective_scan`)."""
    dt = F.softplus(delta) if softplus else delta
    h = torch.zeros(u.shape[0], u.shape[2], A.shape[1], dtype=u.dtype, device=u.device) if h0 is None else h0
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        y = (h * C[:, t, None, :]).sum(-1)
        if D is not None:
            y = y + D * u[:, t]
        ys.append(y if z is None else y * F.silu(z[:, t]))
    return torch.stack(ys, 1), h


def _inputs(device, batch=2, length=7, dim=3, n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=F64).to(device)  # noqa: E731
    return dict(u=r(batch, length, dim), delta=r(batch, length, dim), A=-(r(dim, n).abs() + 0.1),
                B=r(batch, length, n), C=r(batch, length, n), D=r(dim), z=r(batch, length, dim), h0=r(batch, dim, n))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("chunk", [1, 3, 7, None])
@pytest.mark.parametrize("variant", ["full", "bare", "no_h0"])
def test_selective_scan_reference_and_gradcheck(device, chunk, variant):
    args = _inputs(device)
    softplus = variant != "bare"
    if variant == "bare":  # no D, no gate, no initial state, dt given directly
        args.update(D=None, z=None, h0=None, delta=args["delta"].abs() * 0.5)
    if variant == "no_h0":
        args["h0"] = None
    y, h = selective_scan(**args, delta_softplus=softplus, chunk_size=chunk)
    y_ref, h_ref = _reference(*args.values(), softplus)
    assert (y - y_ref).abs().max().item() <= 1e-12 and (h - h_ref).abs().max().item() <= 1e-12
    names = [k for k, v in args.items() if v is not None]
    leaves = [args[k].clone().requires_grad_(True) for k in names]

    def fn(*xs):
        return selective_scan(**{**args, **dict(zip(names, xs))}, delta_softplus=softplus, chunk_size=chunk)

    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradcheck(lambda *xs: fn(*xs)[0], leaves)  # the final state unused (its grad is zero)


@pytest.mark.parametrize("device", DEVICES)
def test_selective_scan_projected_delta_and_gate(device):
    """`delta_weight`/`delta_bias` and `z_weight`: the projections formed chunk by chunk equal projecting first."""
    args = _inputs(device, length=9)
    gen = torch.Generator().manual_seed(4)
    W, b, Wz = (torch.randn(*s, generator=gen, dtype=F64).to(device) for s in ((3, 2), (3,), (3, 5)))
    d_in, z_in = (torch.randn(2, 9, k, generator=gen, dtype=F64).to(device) for k in (2, 5))
    full = {**args, "delta": F.linear(d_in, W, b), "z": F.linear(z_in, Wz)}
    y_ref, h_ref = _reference(*full.values(), True)
    kw = dict(delta_softplus=True, delta_weight=W, delta_bias=b, z_weight=Wz, chunk_size=4)
    y, h = selective_scan(**{**args, "delta": d_in, "z": z_in}, **kw)
    assert (y - y_ref).abs().max().item() <= 1e-12 and (h - h_ref).abs().max().item() <= 1e-12
    leaves = [t.clone().requires_grad_(True) for t in (args["u"], d_in, args["B"], z_in, args["h0"], W, b, Wz)]

    def fn(u, dd, B, zz, h0, W, b, Wz):
        return selective_scan(u, dd, args["A"], B, args["C"], args["D"], zz, h0, delta_softplus=True, delta_weight=W,
                              delta_bias=b, z_weight=Wz, chunk_size=4)

    assert torch.autograd.gradcheck(fn, leaves)


def test_selective_scan_buffers_are_not_shared_between_live_graphs():
    """Reused chunk buffers: two forwards before either backward, and a second backward through a retained graph,
    give the gradients of independent calls."""
    a1, a2 = _inputs("cpu", length=20, seed=1), _inputs("cpu", length=20, seed=2)
    leaves1 = {k: v.clone().requires_grad_(True) for k, v in a1.items()}
    leaves2 = {k: v.clone().requires_grad_(True) for k, v in a2.items()}
    y1, _ = selective_scan(**leaves1, delta_softplus=True, chunk_size=20)
    y2, _ = selective_scan(**leaves2, delta_softplus=True, chunk_size=20)
    g2 = torch.autograd.grad(y2.sum(), list(leaves2.values()))
    g1 = torch.autograd.grad(y1.sum(), list(leaves1.values()), retain_graph=True)
    g1_again = torch.autograd.grad(y1.sum(), list(leaves1.values()))
    for args, grads in ((a1, g1), (a2, g2), (a1, g1_again)):
        fresh = {k: v.clone().requires_grad_(True) for k, v in args.items()}
        ref = torch.autograd.grad(_reference(*fresh.values(), True)[0].sum(), list(fresh.values()))
        for g, r in zip(grads, ref):
            assert (g - r).abs().max().item() <= 1e-10


def test_selective_scan_buffers_cross_inference_mode():
    """Buffers released under torch.inference_mode are not handed to a call outside it (nor the other way)."""
    args = _inputs("cpu", length=11)
    with torch.inference_mode():
        y_inf, _ = selective_scan(**args, chunk_size=4)
    y, _ = selective_scan(**{k: v.requires_grad_(True) for k, v in args.items()}, chunk_size=4)
    y.sum().backward()
    with torch.inference_mode():
        assert torch.equal(selective_scan(**args, chunk_size=4)[0], y_inf)
    assert torch.equal(y.detach(), y_inf)


def test_selective_scan_without_grad_equals_with_grad():
    args = _inputs("cpu", length=11)
    with torch.no_grad():
        y0, h0 = selective_scan(**args, delta_softplus=True, chunk_size=4)
    y1, h1 = selective_scan(**{k: v.requires_grad_(True) for k, v in args.items()}, delta_softplus=True,
                            chunk_size=4)
    assert torch.equal(y0, y1.detach()) and torch.equal(h0, h1.detach())


def test_selective_scan_bad_input_is_named():
    args = _inputs("cpu")
    with pytest.raises(ValueError, match="delta must be"):
        selective_scan(**{**args, "delta": args["delta"][:, :3]})
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(**{**args, "A": args["A"].t()})
    with pytest.raises(ValueError, match="initial state"):
        selective_scan(**{**args, "h0": args["h0"][:1]})
    with pytest.raises(ValueError, match="z_weight"):
        selective_scan(**{**args, "z": None}, z_weight=torch.ones(3, 2, dtype=F64))
