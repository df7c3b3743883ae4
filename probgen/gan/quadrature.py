"""Adaptive quadrature over the real line for pairs of 1-D distributions (scipy ``quad_vec``).

The integrand is evaluated for all batch elements at once. Breakpoints are placed where the mass
is (means, means ± a few standard deviations, mixture components, finite support ends), so that
narrow peaks are not stepped over, and the masses of both distributions are integrated alongside
as a check: a total mass off by more than ``MASS_TOLERANCE`` raises instead of returning a wrong
value.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.distributions import Distribution, MixtureSameFamily, Uniform, constraints

from probgen.kl.monte_carlo import _log_prob_or_neginf

__all__ = ["MASS_TOLERANCE", "integrate_pair", "is_univariate_continuous", "log_prob_or_neginf"]

MASS_TOLERANCE = 1e-6
_MAX_POINTS = 400


def log_prob_or_neginf(d: Distribution, x: torch.Tensor) -> torch.Tensor:
    """log d(x), with −inf (instead of an error or garbage) where x is outside d's support,
    also for wrapped distributions (a LogNormal's base Normal sees log x = NaN for x < 0)."""
    return _log_prob_or_neginf(d, x)


def is_univariate_continuous(d: Distribution) -> bool:
    """True for a distribution on (a subset of) the real line with a density."""
    return d.event_shape == torch.Size() and not d.support.is_discrete


def _bounds(d: Distribution) -> tuple[float, float]:
    support = d.support
    while isinstance(support, constraints.independent):  # pragma: no cover (event dim 0 here)
        support = support.base_constraint
    lower = getattr(support, "lower_bound", -math.inf)
    upper = getattr(support, "upper_bound", math.inf)
    lo = float(torch.as_tensor(lower).min()) if torch.is_tensor(lower) else float(lower)
    hi = float(torch.as_tensor(upper).max()) if torch.is_tensor(upper) else float(upper)
    return lo, hi


def _landmarks(d: Distribution) -> list[torch.Tensor]:
    """Points where d has mass: mean ± k·stddev, mixture components, uniform ends."""
    found: list[torch.Tensor] = []
    if isinstance(d, MixtureSameFamily):
        found += _landmarks(d.component_distribution)
    if isinstance(d, Uniform):
        found += [d.low, d.high]
    try:
        mean, std = d.mean, d.stddev
    except NotImplementedError:
        return found
    for k in (0.0, -2.0, 2.0, -5.0, 5.0, -10.0, 10.0):
        found.append(mean + k * std)
    return found


def _breakpoints(p: Distribution, q: Distribution, lo: float, hi: float) -> list[float]:
    values = torch.cat([v.detach().reshape(-1).double() for v in _landmarks(p) + _landmarks(q)])
    values = values[torch.isfinite(values) & (values > lo) & (values < hi)]
    points = np.unique(values.cpu().numpy())
    if points.size > _MAX_POINTS:
        points = points[np.linspace(0, points.size - 1, _MAX_POINTS).round().astype(int)]
    return [float(v) for v in points]


def integrate_pair(
    integrand: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    p: Distribution,
    q: Distribution,
    *,
    points: list[float] | None = None,
    epsabs: float = 1e-12,
    epsrel: float = 1e-10,
) -> tuple[torch.Tensor, float]:
    r"""∫ integrand(x, log p(x), log q(x)) dx over the union of the supports, batchwise.

    Args:
        integrand: ``(x, log_p, log_q) -> Tensor`` of shape ``broadcast(p.batch_shape,
            q.batch_shape)``; ``x`` is a float64 tensor of shape ``(1,)``, ``log_p`` and
            ``log_q`` have shape ``(1, *batch)`` and are ``-inf`` outside the supports.
        p, q: univariate continuous distributions.
        points: extra breakpoints (e.g. where the integrand has a kink).

    Returns:
        ``(value, abserr)``: a float64 tensor of the batch shape, and scipy's error bound.

    Raises:
        RuntimeError: if p or q does not integrate to 1 within ``MASS_TOLERANCE`` over the
            subdivision used (the integral then cannot be trusted either).
    """
    from scipy.integrate import quad_vec

    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    size = math.prod(shape)
    lo_p, hi_p = _bounds(p)
    lo_q, hi_q = _bounds(q)
    lo, hi = min(lo_p, lo_q), max(hi_p, hi_q)
    breaks = sorted(set(_breakpoints(p, q, lo, hi) + [v for v in points or [] if lo < v < hi]))

    def f(t: float) -> np.ndarray:
        x = torch.tensor([t], dtype=torch.float64)
        log_p = log_prob_or_neginf(p, x).expand((1, *shape))
        log_q = log_prob_or_neginf(q, x).expand((1, *shape))
        value = integrand(x, log_p, log_q).detach().double().expand(shape).reshape(-1)
        masses = torch.cat([log_p.exp().reshape(-1), log_q.exp().reshape(-1)]).double()
        return torch.cat([value, masses]).cpu().numpy()

    result, abserr = quad_vec(
        f, lo, hi, epsabs=epsabs, epsrel=epsrel, points=breaks or None, limit=20_000
    )
    mass_p, mass_q = (
        float(result[size:].reshape(2, -1)[0].min()),
        float(result[size:].reshape(2, -1)[1].min()),
    )
    worst = float(np.max(np.abs(result[size:] - 1.0)))
    if not worst <= MASS_TOLERANCE:
        raise RuntimeError(
            f"quadrature lost mass: p integrates to {mass_p:.9g} and q to {mass_q:.9g} (should "
            f"be 1) over [{lo}, {hi}] with {len(breaks)} breakpoints; pass `points` near the "
            f"mass, or use method='mc'"
        )
    return torch.from_numpy(np.asarray(result[:size])).reshape(shape), float(abserr)
