"""ContinuousBernoulli ‖ ContinuousBernoulli against a 60-digit mpmath reference.

The reference is the Bregman form A(b) − A(a) − (b − a)·μ(a) with A(η) = log(expm1(η)/η),
evaluated in mpmath from the logits exactly as the distributions store them.
"""

from __future__ import annotations

import mpmath as mp
import pytest
import torch
from torch.distributions import ContinuousBernoulli as CB
from torch.distributions import kl_divergence as torch_kl

import probgen
from probgen.kl import continuous_bernoulli
from probgen.kl.registry import lookup

mp.mp.dps = 60
RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def _A(e):
    return mp.log(mp.expm1(e) / e) if e != 0 else mp.mpf(0)


def _mu(e):
    return 1 / (1 - mp.exp(-e)) - 1 / e if e != 0 else mp.mpf(0.5)


def _ref(a, b):
    a, b = mp.mpf(a), mp.mpf(b)
    return _A(b) - _A(a) - (b - a) * _mu(a)


def _close(value, ref, dtype):
    ref = float(ref)
    if dtype == torch.float32 and ref < 1e-3 and abs(value - ref) <= 1e-7:
        return True
    return abs(value - ref) <= RTOL[dtype] * abs(ref)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logits_reference(dtype):
    rels = [1e-12, 1e-9, 1e-6, 1e-3] if dtype == torch.float64 else [1e-5, 1e-3]
    steps = [0.1, 1.9, 2.1, -3.0, 5.0, -5.0, 50.0, -100.0]
    for a in [0.0, 1e-8, 1e-3, 0.3, -0.7, 1.0, 2.5, 3.0, 5.0, -40.0, 100.0, 1e4]:
        cases = [a * (1 + r) + r for r in rels] + [a + s for s in steps]
        for b in cases:
            at, bt = torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype)
            if at == bt:
                continue
            value = torch_kl(CB(logits=at), CB(logits=bt)).item()
            assert _close(value, _ref(at.item(), bt.item()), dtype), (a, b, value)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_probs_reference_near_half_and_near_equal(dtype):
    rels = [1e-12, 1e-9, 1e-6, 1e-3] if dtype == torch.float64 else [1e-5, 1e-3]
    for lam in [0.5, 0.5 + 1e-7, 0.499, 0.3, 0.9, 1e-4]:
        for r in rels:
            p = CB(torch.tensor(lam, dtype=dtype))
            q = CB(torch.tensor(lam * (1 + r), dtype=dtype))
            if p.probs == q.probs:
                continue
            value = torch_kl(p, q).item()
            # reference from the stored (torch-clamped) probabilities, logits exact in mpmath
            lp, lq = mp.mpf(p.probs.item()), mp.mpf(q.probs.item())
            ref = _ref(mp.log(lp / (1 - lp)), mp.log(lq / (1 - lq)))
            assert _close(value, ref, dtype), (lam, r, value, float(ref))


def test_self_kl_zero_nonnegative_and_torch_negative_case():
    lam = torch.tensor([0.2, 0.5, 0.5001, 0.97])
    assert (torch_kl(CB(lam), CB(lam)) == 0).all()
    near = CB(lam * (1 + 1e-6))
    assert (torch_kl(CB(lam), near) >= 0).all()
    logits = torch.linspace(-30, 30, 101, dtype=torch.float64)
    assert (torch_kl(CB(logits=logits), CB(logits=logits * (1 + 1e-9))) >= 0).all()


def test_monte_carlo_agrees():
    p = CB(logits=torch.tensor(0.8, dtype=torch.float64))
    q = CB(logits=torch.tensor(-1.5, dtype=torch.float64))
    exact = probgen.kl_divergence(p, q, method="analytic")
    mc = probgen.mc_kl(p, q, num_samples=20000, seed=5)
    assert abs(exact.item() - mc.value.item()) <= 5 * mc.stderr.item()


def test_shapes_gradients_dispatch():
    a = torch.tensor([[0.2], [0.6]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([-3.0, 0.01, 7.0, 40.0], dtype=torch.float64, requires_grad=True)
    value = torch_kl(CB(a), CB(logits=b))
    assert value.shape == (2, 4)
    value.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert (a.grad != 0).all() and (b.grad != 0).all()
    fn = lookup(CB(0.3), CB(0.4))
    assert fn.__module__ == continuous_bernoulli.__name__


def test_batched_float64_logits_across_differences_against_mpmath():
    # One batch with logit differences from 1e-8 to 5 at logits up to ±30: elements kept in
    # the direct form next to elements redone by quadrature.
    g = torch.Generator().manual_seed(3)
    n = 300
    a = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 30
    step = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * 20 - 18)
    b = a + step * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
    p, q = CB(logits=a.reshape(15, 20)), CB(logits=b.reshape(15, 20))
    values = torch_kl(p, q).flatten().tolist()
    for v, x, y in zip(values, a.tolist(), b.tolist(), strict=True):
        assert _close(v, _ref(x, y), torch.float64), (x, y, v)


def test_float32_quadrature_gradients():
    # Close logits (|δ| ≤ 2: the quadrature, whose nodes cross |t| = 1 where V switches from its
    # series to the direct form): finite float32 gradients, within float32 rounding of the
    # float64 ones (∂KL/∂b = μ(b) − μ(a), ∂KL/∂a = −δ·V(a), both of size ≤ |δ| ≤ 2).
    g = torch.Generator().manual_seed(3)
    a = torch.empty(500, dtype=torch.float64).uniform_(-3, 3, generator=g)
    b = a + torch.empty(500, dtype=torch.float64).uniform_(-2, 2, generator=g)
    grads = {}
    for dtype in (torch.float32, torch.float64):
        la = a.to(dtype).requires_grad_()
        lb = b.to(dtype).requires_grad_()
        kl = probgen.kl_divergence(CB(logits=la), CB(logits=lb))
        kl.sum().backward()
        grads[dtype] = (la.grad.double(), lb.grad.double())
        assert all(bool(torch.isfinite(x).all()) for x in grads[dtype])
    for g32, g64 in zip(grads[torch.float32], grads[torch.float64], strict=True):
        assert (g32 - g64).abs().max() <= 1e-5
