"""VonMises ‖ VonMises KL against mpmath and a score-function Monte Carlo estimate."""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import torch
from torch.distributions import VonMises
from torch.distributions import kl_divergence as torch_kl

import probgen
from probgen.kl import von_mises
from probgen.kl.registry import lookup

RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}
KAPPAS = {
    torch.float64: [1e-30, 1e-6, 0.01, 0.24, 1.0, 5.0, 29.9, 30.0, 1e3, 1e6, 1e30],
    torch.float32: [1e-6, 0.01, 0.5, 5.0, 29.9, 30.0, 1e3, 1e6],
}
STEPS = [1e-12, 1e-9, 1e-6, 1e-3, 0.04, -0.04, 0.3, -0.5, -0.9, 3.0]


def _ref(mu_p, kp, mu_q, kq):
    kp, kq = mp.mpf(kp), mp.mpf(kq)
    a = mp.besseli(1, kp) / mp.besseli(0, kp)
    return mp.log(mp.besseli(0, kq) / mp.besseli(0, kp)) + a * (
        kp - kq * mp.cos(mp.mpf(mu_p) - mp.mpf(mu_q))
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_against_mpmath(dtype):
    rows = []
    for k in KAPPAS[dtype]:
        for r in STEPS:
            if dtype == torch.float32 and abs(r) < 1e-6:
                continue
            for dmu in (0.0, 1e-7, 2.5):
                kp = torch.tensor(k, dtype=dtype)
                rows.append(
                    (
                        torch.tensor(0.3 + dmu, dtype=dtype),
                        kp,
                        torch.tensor(0.3, dtype=dtype),
                        kp * (1 + r),
                    )
                )
    cols = [torch.stack(c) for c in zip(*rows, strict=True)]
    values = probgen.kl_divergence(VonMises(cols[0], cols[1]), VonMises(cols[2], cols[3]))
    assert values.dtype == dtype
    with mp.workdps(200):
        for v, *ps in zip(values.tolist(), *(c.tolist() for c in cols), strict=True):
            ref = float(_ref(*ps))
            assert v >= 0
            if dtype == torch.float32 and ref < 1e-3:
                assert abs(v - ref) <= 1e-7, (ps, v, ref)
            else:
                assert abs(v - ref) <= RTOL[dtype] * ref, (ps, v, ref)


def test_self_divergence_and_periodicity():
    k = torch.tensor([1e-6, 0.2, 3.0, 50.0, 1e5], dtype=torch.float64)
    mu = torch.tensor([0.0, 1.0, -2.0, 3.0, 0.5], dtype=torch.float64)
    assert torch.equal(
        probgen.kl_divergence(VonMises(mu, k), VonMises(mu, k)), torch.zeros(5, dtype=torch.float64)
    )
    shifted = probgen.kl_divergence(VonMises(mu + 2 * math.pi, k), VonMises(mu, k))
    assert shifted.max() <= 1e-20 * k.max()


def test_monte_carlo_score_function():
    p = VonMises(torch.tensor(0.5), torch.tensor(2.0))
    q = VonMises(torch.tensor(-0.4), torch.tensor(0.8))
    mc = probgen.mc_kl(p, q, 20000, seed=0)
    assert mc.gradient == "score_function"
    assert abs(probgen.kl_divergence(p, q) - mc.value) <= 5 * mc.stderr


def test_broadcasting_gradients_and_dispatch():
    k = torch.tensor([0.1, 2.0, 40.0], requires_grad=True)
    mu = torch.tensor([[0.0], [1.0]], requires_grad=True)
    kl = probgen.kl_divergence(VonMises(mu, k), VonMises(torch.tensor(0.2), k.detach() * 1.3))
    assert kl.shape == (2, 3)
    kl.sum().backward()
    assert torch.isfinite(k.grad).all() and torch.isfinite(mu.grad).all()
    p, q = VonMises(0.0, 1.0), VonMises(1.0, 2.0)
    assert lookup(p, q) is von_mises._kl_von_mises_von_mises
    assert torch_kl(p, q) == probgen.kl_divergence(p, q)
