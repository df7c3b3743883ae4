"""Random, valid distributions of every family the benchmarks time, with ~n parameter elements."""

from __future__ import annotations

import torch
import torch.distributions as td

EVENT = 4  # event size of the multivariate and categorical families


def _pos(n, dtype, device, lo=0.5, hi=3.0):
    return torch.empty(n, dtype=dtype, device=device).uniform_(lo, hi)


def _unit(n, dtype, device):
    return torch.empty(n, dtype=dtype, device=device).uniform_(0.05, 0.95)


def _spd(b, d, dtype, device):
    a = torch.randn(b, d, d, dtype=dtype, device=device) / d**0.5
    return a @ a.mT + torch.eye(d, dtype=dtype, device=device)


# type -> factory(n elements, dtype, device) -> distribution with ~n parameter elements
FACTORIES = {
    td.Normal: lambda n, dt, dv, e: td.Normal(torch.randn(n, dtype=dt, device=dv), _pos(n, dt, dv)),
    td.LogNormal: lambda n, dt, dv, e: td.LogNormal(
        torch.randn(n, dtype=dt, device=dv), _pos(n, dt, dv)
    ),
    td.HalfNormal: lambda n, dt, dv, e: td.HalfNormal(_pos(n, dt, dv)),
    td.Laplace: lambda n, dt, dv, e: td.Laplace(
        torch.randn(n, dtype=dt, device=dv), _pos(n, dt, dv)
    ),
    td.Gumbel: lambda n, dt, dv, e: td.Gumbel(torch.randn(n, dtype=dt, device=dv), _pos(n, dt, dv)),
    td.Cauchy: lambda n, dt, dv, e: td.Cauchy(torch.randn(n, dtype=dt, device=dv), _pos(n, dt, dv)),
    td.Uniform: lambda n, dt, dv, e: td.Uniform(
        -_pos(n, dt, dv, 1.0, 2.0), _pos(n, dt, dv, 1.0, 2.0)
    ),
    td.Pareto: lambda n, dt, dv, e: td.Pareto(_pos(n, dt, dv, 1.0, 1.5), _pos(n, dt, dv)),
    td.Exponential: lambda n, dt, dv, e: td.Exponential(_pos(n, dt, dv)),
    td.Gamma: lambda n, dt, dv, e: td.Gamma(_pos(n, dt, dv), _pos(n, dt, dv)),
    td.Beta: lambda n, dt, dv, e: td.Beta(_pos(n, dt, dv), _pos(n, dt, dv)),
    td.Kumaraswamy: lambda n, dt, dv, e: td.Kumaraswamy(_pos(n, dt, dv), _pos(n, dt, dv)),
    td.Weibull: lambda n, dt, dv, e: td.Weibull(_pos(n, dt, dv), _pos(n, dt, dv)),
    td.VonMises: lambda n, dt, dv, e: td.VonMises(
        torch.randn(n, dtype=dt, device=dv), _pos(n, dt, dv)
    ),
    td.Dirichlet: lambda n, dt, dv, e: td.Dirichlet(
        _pos(n // e, dt, dv).new_empty(n // e, e).uniform_(0.5, 3.0)
    ),
    td.Bernoulli: lambda n, dt, dv, e: td.Bernoulli(logits=torch.randn(n, dtype=dt, device=dv)),
    td.ContinuousBernoulli: lambda n, dt, dv, e: td.ContinuousBernoulli(probs=_unit(n, dt, dv)),
    td.Geometric: lambda n, dt, dv, e: td.Geometric(probs=_unit(n, dt, dv)),
    td.Poisson: lambda n, dt, dv, e: td.Poisson(_pos(n, dt, dv)),
    td.Binomial: lambda n, dt, dv, e: td.Binomial(10, probs=_unit(n, dt, dv)),
    td.Categorical: lambda n, dt, dv, e: td.Categorical(
        logits=torch.randn(n // e, e, dtype=dt, device=dv)
    ),
    td.OneHotCategorical: lambda n, dt, dv, e: td.OneHotCategorical(
        logits=torch.randn(n // e, e, dtype=dt, device=dv)
    ),
    td.MultivariateNormal: lambda n, dt, dv, e: td.MultivariateNormal(
        torch.randn(n // e, e, dtype=dt, device=dv),
        covariance_matrix=_spd(n // e, e, dt, dv),
    ),
    td.LowRankMultivariateNormal: lambda n, dt, dv, e: td.LowRankMultivariateNormal(
        torch.randn(n // e, e, dtype=dt, device=dv),
        torch.randn(n // e, e, 2, dtype=dt, device=dv) / 2,
        _pos(n, dt, dv).reshape(n // e, e),
    ),
    td.Independent: lambda n, dt, dv, e: td.Independent(
        td.Normal(
            torch.randn(n // e, e, dtype=dt, device=dv),
            _pos(n, dt, dv).reshape(n // e, e),
        ),
        1,
    ),
}


def make(t, n, dtype, device, event=EVENT):
    """A distribution of type ``t`` with about ``n`` parameter elements (batch n / event for the
    multivariate and categorical families), or None if ``t`` has no factory."""
    factory = FACTORIES.get(t)
    return None if factory is None else factory(n, dtype, device, event)
