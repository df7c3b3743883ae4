"""JSD against a kernel density estimate of samples: density, bandwidth, floor and bias."""

from __future__ import annotations

import math

import torch

from probgen.gan.kde import gaussian_kde, jsd_floor, jsd_to_samples, select_bandwidth
from probgen.gan.toys import ring


def test_kde_density_by_hand():
    points = torch.tensor([[0.0, 0.0], [1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    h = 0.4
    kde = gaussian_kde(points, h)
    x = torch.tensor([[0.2, 0.1], [3.0, -1.0]], dtype=torch.float64)
    sq = torch.cdist(x, points).square()
    manual = torch.logsumexp(-sq / (2 * h**2), 1) - math.log(3 * 2 * math.pi * h**2)
    torch.testing.assert_close(kde.log_prob(x), manual)
    one_d = gaussian_kde(points[:, :1], h, event_dim=0)
    assert (
        one_d.event_shape == ()
        and one_d.log_prob(torch.tensor(0.3, dtype=torch.float64)).isfinite()
    )


def test_bandwidth_close_to_normal_reference_rule():
    # For N(0, 1) data the likelihood-optimal bandwidth is of the order of Silverman's
    # 1.06·m^(−1/5) (0.30 for the m = 500 points that fit); a bad selector lands far away.
    x = torch.randn(1000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = select_bandwidth(x, generator=torch.Generator().manual_seed(1))
    assert 0.5 * 0.30 < h < 2 * 0.30


def test_collapsed_generator_against_exact_jsd():
    # All mass on one of the 8 modes: JSD = ½[(1/8)log(2/9) + (7/8)log 2 + log(16/9)].
    toy = ring()
    exact = 0.5 * (math.log(2 / 9) / 8 + 7 * math.log(2) / 8 + math.log(16 / 9))
    n = 400
    mode = toy.modes[0] + toy.mode_std[0] * torch.randn(
        n, 2, generator=torch.Generator().manual_seed(3)
    )
    est = jsd_to_samples(toy, mode, num_samples=n, seed=0)
    floor = jsd_floor(toy, n, num_samples=n, seed=0)
    # Tolerance: 5 standard errors, plus twice the estimator's smoothing bias as measured by the
    # floor (the value a perfect generator gets).
    assert abs(est.value - exact) < 5 * est.stderr + 2 * floor.value
    assert floor.value < est.value
