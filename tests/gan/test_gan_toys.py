"""The bundled toys: known densities, sampling that matches them, mode coverage."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.gan.toys import get_toy, mixture1d, mode_coverage, ring


def test_ring_geometry_and_density():
    toy = ring()
    assert toy.modes.shape == (8, 2) and toy.dim == 2
    torch.testing.assert_close(toy.modes.norm(dim=1), torch.full((8,), 2.0))
    x = torch.tensor([[2.0, 0.0], [0.3, -0.1]])
    # Equal mixture of N(m_k, 0.05² I): log density by hand.
    sq = torch.cdist(x, toy.modes).square()
    manual = torch.logsumexp(-sq / (2 * 0.05**2), dim=1) - math.log(8 * 2 * math.pi * 0.05**2)
    torch.testing.assert_close(toy.log_prob(x), manual)


@pytest.mark.parametrize("make", [ring, mixture1d])
def test_sample_matches_distribution(make):
    toy = make(dtype=torch.float64)
    n = 20_000
    x = toy.sample(n, torch.Generator().manual_seed(0))
    assert x.shape == (n, toy.dim)
    mean = toy.distribution.mean.reshape(toy.dim)
    std = toy.distribution.stddev.reshape(toy.dim)
    assert ((x.mean(0) - mean).abs() < 5 * std / math.sqrt(n)).all()
    # E[log p(X)] = −entropy: the sample mean of the exact log density is consistent with the
    # distribution's own sampler.
    a = toy.log_prob(x)
    b = toy.log_prob(toy.distribution.sample((n,)).reshape(n, toy.dim))
    assert abs(a.mean() - b.mean()) < 5 * math.hypot(a.std() / n**0.5, b.std() / n**0.5)


@pytest.mark.parametrize("make", [ring, mixture1d])
def test_data_covers_all_modes(make):
    toy = make()
    n = 4000
    cov = mode_coverage(toy.sample(n, torch.Generator().manual_seed(1)), toy)
    assert cov.covered == toy.modes.shape[0]
    # P(within 3 std) = P(χ²_d ≤ 9): 1 − e^{−4.5} in 2-D, erf(3/√2) in 1-D.
    p = 1 - math.exp(-4.5) if toy.dim == 2 else math.erf(3 / math.sqrt(2))
    assert abs(cov.high_quality - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_collapsed_samples_cover_few_modes():
    toy = ring()
    x = toy.sample(3000, torch.Generator().manual_seed(2))
    keep = x[:, 0] > 0.1  # the three modes at angles −45°, 0°, 45°
    cov = mode_coverage(x[keep], toy)
    assert cov.covered == 3
    far = mode_coverage(torch.zeros(100, 2), toy)
    assert far.covered == 0 and far.high_quality == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="data must be one of"):
        get_toy("swiss-roll")
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        mode_coverage(torch.zeros(10, 3), ring())
    with pytest.raises(ValueError, match="threshold"):
        mode_coverage(torch.zeros(10, 2), ring(), threshold=0.0)
