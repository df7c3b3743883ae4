"""Beta, Dirichlet, Beta ↔ Dirichlet and Kumaraswamy → Beta KL against mpmath and Monte Carlo."""

from __future__ import annotations

import random

import mpmath as mp
import pytest
import torch
from kl_targets import RTOL
from kl_targets import check_target as _check
from torch.distributions import Beta, Dirichlet, Kumaraswamy
from torch.distributions import kl_divergence as torch_kl

import probgen
from probgen.kl import beta
from probgen.kl.registry import lookup

SCALES = {
    torch.float64: [1e-30, 1e-6, 0.01, 0.5, 1.0, 3.0, 7.9, 30.0, 1e3, 1e6],
    torch.float32: [1e-6, 0.01, 0.5, 1.0, 3.0, 30.0, 1e3, 1e6],
}


def _ref_dirichlet(al, be):
    al, be = [mp.mpf(x) for x in al], [mp.mpf(x) for x in be]
    a0, b0 = sum(al), sum(be)
    return (
        mp.loggamma(a0)
        - sum(mp.loggamma(x) for x in al)
        - mp.loggamma(b0)
        + sum(mp.loggamma(x) for x in be)
        + sum((x - y) * (mp.digamma(x) - mp.digamma(a0)) for x, y in zip(al, be, strict=True))
    )


def _cases(dtype, k, n, seed):
    rng = random.Random(seed)
    for _ in range(n):
        al = [rng.choice(SCALES[dtype]) * rng.uniform(0.5, 2) for _ in range(k)]
        rel = rng.choice([1e-12, 1e-9, 1e-6, 1e-3, 0.3, 0.9])
        if dtype == torch.float32:
            rel = max(rel, 1e-6)
        be = [a * (1 + rel * rng.uniform(-1, 1)) for a in al]
        yield torch.tensor(al, dtype=dtype), torch.tensor(be, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k", [2, 3, 6])
def test_dirichlet_against_mpmath(dtype, k):
    cases = list(_cases(dtype, k, 60, seed=k))
    al = torch.stack([c[0] for c in cases])
    be = torch.stack([c[1] for c in cases])
    values = probgen.kl_divergence(Dirichlet(al), Dirichlet(be))
    with mp.workdps(160):
        for v, a, b in zip(values.tolist(), al.tolist(), be.tolist(), strict=True):
            _check(v, _ref_dirichlet(a, b), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_beta_against_mpmath(dtype):
    cases = list(_cases(dtype, 2, 80, seed=7))
    al = torch.stack([c[0] for c in cases])
    be = torch.stack([c[1] for c in cases])
    values = probgen.kl_divergence(Beta(al[:, 0], al[:, 1]), Beta(be[:, 0], be[:, 1]))
    with mp.workdps(160):
        for v, a, b in zip(values.tolist(), al.tolist(), be.tolist(), strict=True):
            _check(v, _ref_dirichlet(a, b), dtype)


def test_dimension_256_and_self_divergence():
    torch.manual_seed(0)
    al = torch.rand(4, 256, dtype=torch.float64) * 1e3 + 1e-3
    be = al * (1 + 1e-7 * torch.randn(4, 256, dtype=torch.float64))
    values = probgen.kl_divergence(Dirichlet(al), Dirichlet(be))
    with mp.workdps(60):
        for v, a, b in zip(values.tolist(), al.tolist(), be.tolist(), strict=True):
            _check(v, _ref_dirichlet(a, b), torch.float64)
    for dtype in (torch.float32, torch.float64):
        a = torch.tensor([[1e-6, 1e6], [0.3, 7.0], [1.0, 1.0]], dtype=dtype)
        assert torch.equal(
            probgen.kl_divergence(Dirichlet(a), Dirichlet(a)), torch.zeros(3, dtype=dtype)
        )
        assert torch.equal(
            probgen.kl_divergence(Beta(a[:, 0], a[:, 1]), Beta(a[:, 0], a[:, 1])),
            torch.zeros(3, dtype=dtype),
        )


def test_beta_dirichlet_cross_pairs():
    a, b = torch.tensor([0.5, 2.0, 30.0]), torch.tensor([3.0, 0.7, 1e4])
    c = torch.tensor([[1.0, 2.0], [2.5, 0.5], [30.0, 9e3]])
    expected = probgen.kl_divergence(Beta(a, b), Beta(c[:, 0], c[:, 1]))
    # x ∼ Beta(a, b) is the first coordinate of (x, 1 − x) ∼ Dirichlet([a, b]): same density.
    x = torch.tensor([0.3, 0.6, 0.9])
    assert torch.allclose(
        Beta(a, b).log_prob(x),
        Dirichlet(torch.stack([a, b], -1)).log_prob(torch.stack([x, 1 - x], -1)),
    )
    assert torch.equal(torch_kl(Beta(a, b), Dirichlet(c)), expected)
    assert torch.equal(
        torch_kl(Dirichlet(torch.stack([a, b], -1)), Beta(c[:, 0], c[:, 1])), expected
    )
    assert torch_kl(Beta(a, b), Dirichlet(torch.ones(4, 1, 2))).shape == (4, 3)
    with pytest.raises(ValueError, match="K = 3"):
        torch_kl(Beta(a, b), Dirichlet(torch.ones(3)))
    with pytest.raises(ValueError, match="K = 3"):
        torch_kl(Dirichlet(torch.ones(3)), Beta(a, b))


def _ref_kumaraswamy_beta(a, b, al, be):
    """KL by direct quadrature of p·log(p/q) over x (independent of the module's route)."""
    a, b, al, be = map(mp.mpf, (a, b, al, be))
    log_b = mp.loggamma(al) + mp.loggamma(be) - mp.loggamma(al + be)

    def integrand(x):
        xa = x**a
        log_p = mp.log(a * b) + (a - 1) * mp.log(x) + (b - 1) * mp.log1p(-xa)
        log_q = (al - 1) * mp.log(x) + (be - 1) * mp.log1p(-x) - log_b
        return mp.exp(log_p) * (log_p - log_q)

    return mp.quad(integrand, [0, mp.mpf(1) / 4, mp.mpf(1) / 2, mp.mpf(3) / 4, 1])


@pytest.mark.parametrize(
    ("a", "b", "al", "be"),
    [
        (2.0, 3.0, 2.0, 3.0),
        (0.5, 2.0, 1.0, 1.0),
        (5.0, 1.5, 3.0, 0.7),
        (1.0, 4.0, 1.2, 3.9),
        (1.5, 0.9, 2.0, 2.0),
        (30.0, 40.0, 20.0, 5.0),
    ],
)
def test_kumaraswamy_beta_against_quadrature(a, b, al, be):
    v = probgen.kl_divergence(
        Kumaraswamy(torch.tensor(a, dtype=torch.float64), b),
        Beta(torch.tensor(al, dtype=torch.float64), be),
    ).item()
    with mp.workdps(30):
        ref = _ref_kumaraswamy_beta(a, b, al, be)
    assert abs(v - float(ref)) <= 1e-10 * float(ref) + 1e-13


def test_kumaraswamy_beta_zero_on_the_common_line_and_mc():
    # Kumaraswamy(1, b) = Beta(1, b).
    b = torch.tensor([0.01, 0.5, 3.0, 1e3], dtype=torch.float64)
    one = torch.ones_like(b)
    assert probgen.kl_divergence(Kumaraswamy(one, b), Beta(one, b)).max() <= 1e-13
    p, q = Kumaraswamy(torch.tensor(2.0), torch.tensor(3.0)), Beta(torch.tensor(1.5), 4.0)
    mc = probgen.mc_kl(p, q, 20000, seed=0)
    assert abs(probgen.kl_divergence(p, q) - mc.value) <= 5 * mc.stderr
    assert probgen.kl_divergence(p, q).dtype == torch.float32


@pytest.mark.parametrize("pair", ["beta", "dirichlet"])
def test_monte_carlo(pair):
    if pair == "beta":
        p, q = Beta(torch.tensor(2.0), torch.tensor(5.0)), Beta(torch.tensor(3.0), 2.0)
    else:
        p = Dirichlet(torch.tensor([1.5, 2.0, 4.0]))
        q = Dirichlet(torch.tensor([3.0, 1.0, 2.0]))
    mc = probgen.mc_kl(p, q, 20000, seed=0)
    assert abs(probgen.kl_divergence(p, q) - mc.value) <= 5 * mc.stderr


def test_gradients_and_dispatch():
    al = torch.tensor([[0.5, 2.0, 40.0], [1e-3, 3.0, 1e5]], requires_grad=True)
    kl = probgen.kl_divergence(Dirichlet(al), Dirichlet(al.detach() * 1.01))
    kl.sum().backward()
    assert kl.shape == (2,) and torch.isfinite(al.grad).all()
    a = torch.tensor([0.5, 3.0], requires_grad=True)
    probgen.kl_divergence(Kumaraswamy(a, 2.0), Beta(2.0, a)).sum().backward()
    assert torch.isfinite(a.grad).all()
    p, q = Beta(torch.tensor(2.0), 3.0), Beta(torch.tensor(3.0), 3.0)
    assert lookup(p, q) is beta._kl_beta_beta
    assert torch_kl(p, q) == probgen.kl_divergence(p, q)
    assert lookup(Kumaraswamy(1.0, 1.0), q) is beta._kl_kumaraswamy_beta


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k", [2, 3])
def test_in_place_path_matches_autograd_and_broadcast_paths(dtype, k):
    # Without autograd and of one shape: the textbook formula evaluated in place.
    # It must agree with the autograd path and with the broadcast (out-of-place) path within
    # twice the target (each meets the target against mpmath: checked here and in the
    # tests above), its inputs stay untouched, and gradients of the autograd path are finite.
    cases = list(_cases(dtype, k, 60, seed=20 + k))
    al = torch.stack([c[0] for c in cases])
    be = torch.stack([c[1] for c in cases])
    al_copy, be_copy = al.clone(), be.clone()
    in_place = beta.dirichlet_kl(al, be)
    assert torch.equal(al, al_copy) and torch.equal(be, be_copy)
    with mp.workdps(160):
        for v, a, b in zip(in_place.tolist(), al.tolist(), be.tolist(), strict=True):
            _check(v, _ref_dirichlet(a, b), dtype)
    atol = 2e-7 if dtype == torch.float32 else 0.0
    al_grad = al.clone().requires_grad_()
    with_grad = beta.dirichlet_kl(al_grad, be)
    torch.testing.assert_close(with_grad.detach(), in_place, rtol=2 * RTOL[dtype], atol=atol)
    (grad,) = torch.autograd.grad(with_grad.sum(), al_grad)
    assert torch.isfinite(grad).all()
    # one q for every p: broadcast shapes take the out-of-place path
    broadcast = beta.dirichlet_kl(al, be[:1])
    expanded = beta.dirichlet_kl(al, be[:1].expand_as(al).contiguous())
    torch.testing.assert_close(broadcast, expanded, rtol=2 * RTOL[dtype], atol=atol)
