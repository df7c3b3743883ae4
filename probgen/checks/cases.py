"""Parameter points of the audit: a few per registered pair, one of them in a hard regime.

:func:`cases_for_pair` returns ``(label, p, q)`` triples for a pair of types, built from the
examples of each family (:data:`FAMILIES`): a generic point and a hard one (near-equal parameters
at large concentrations, extreme scales, probabilities near 0 or 1). Parameters are rounded to
float32 first, so the float32 and float64 runs check the same law and share their references.
Abstract pairs (``ExponentialFamily``, ``TransformedDistribution``, ``Independent``, Pyro's
``Delta`` and ``MaskedDistribution``) get representative concrete instances.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.distributions as td
from torch.distributions import Distribution
from torch.distributions.exp_family import ExponentialFamily

__all__ = ["FAMILIES", "cases_for_pair", "has_cases"]

Case = tuple[str, Distribution, Distribution]
Maker = Callable[[Callable], list[tuple[str, Distribution]]]


def _t(dtype: torch.dtype):
    def t(*v):
        x = np.asarray(v[0] if len(v) == 1 else v, dtype=np.float32)
        return torch.tensor(x, dtype=dtype)

    return t


# family -> f(t) -> [(label, instance)]; the first is generic, the last is the hard regime.
FAMILIES: dict[type, Maker] = {
    td.Normal: lambda t: [
        ("N(0,1)", td.Normal(t(0.0), t(1.0))),
        ("N(1.5,2.5)", td.Normal(t(1.5), t(2.5))),
        ("N(1e3,1e-3)", td.Normal(t(1000.0), t(1e-3))),
    ],
    td.Laplace: lambda t: [
        ("Laplace(0,1)", td.Laplace(t(0.0), t(1.0))),
        ("Laplace(1,0.5)", td.Laplace(t(1.0), t(0.5))),
        ("Laplace(1e3,1e-3)", td.Laplace(t(1000.0), t(1e-3))),
    ],
    td.Cauchy: lambda t: [
        ("Cauchy(0,1)", td.Cauchy(t(0.0), t(1.0))),
        ("Cauchy(2,0.5)", td.Cauchy(t(2.0), t(0.5))),
        ("Cauchy(1e3,1e-3)", td.Cauchy(t(1000.0), t(1e-3))),
    ],
    td.Gumbel: lambda t: [
        ("Gumbel(0,1)", td.Gumbel(t(0.0), t(1.0))),
        ("Gumbel(1,2)", td.Gumbel(t(1.0), t(2.0))),
        ("Gumbel(1e3,1e-2)", td.Gumbel(t(1000.0), t(1e-2))),
    ],
    td.Uniform: lambda t: [
        ("U(0,1)", td.Uniform(t(0.0), t(1.0))),
        ("U(-1,3)", td.Uniform(t(-1.0), t(3.0))),
        ("U(0.25,0.2501)", td.Uniform(t(0.25), t(0.2501))),
    ],
    td.Exponential: lambda t: [
        ("Exp(1)", td.Exponential(t(1.0))),
        ("Exp(2.5)", td.Exponential(t(2.5))),
        ("Exp(1e4)", td.Exponential(t(1e4))),
    ],
    td.Gamma: lambda t: [
        ("Gamma(2,1)", td.Gamma(t(2.0), t(1.0))),
        ("Gamma(0.5,3)", td.Gamma(t(0.5), t(3.0))),
        ("Gamma(2947581,2.0780566)", td.Gamma(t(2947581.0), t(2.0780566))),
    ],
    td.Beta: lambda t: [
        ("Beta(2,3)", td.Beta(t(2.0), t(3.0))),
        ("Beta(0.5,0.7)", td.Beta(t(0.5), t(0.7))),
        ("Beta(3e4,2e4)", td.Beta(t(30000.0), t(20000.0))),
    ],
    td.Pareto: lambda t: [
        ("Pareto(1,5)", td.Pareto(t(1.0), t(5.0))),
        ("Pareto(2,7)", td.Pareto(t(2.0), t(7.0))),
        ("Pareto(1e-3,50)", td.Pareto(t(1e-3), t(50.0))),
    ],
    td.HalfNormal: lambda t: [
        ("HalfNormal(1)", td.HalfNormal(t(1.0))),
        ("HalfNormal(3)", td.HalfNormal(t(3.0))),
        ("HalfNormal(1e-4)", td.HalfNormal(t(1e-4))),
    ],
    td.LogNormal: lambda t: [
        ("LogNormal(0,1)", td.LogNormal(t(0.0), t(1.0))),
        ("LogNormal(1,0.5)", td.LogNormal(t(1.0), t(0.5))),
        ("LogNormal(5,1e-3)", td.LogNormal(t(5.0), t(1e-3))),
    ],
    td.Kumaraswamy: lambda t: [
        ("Kumaraswamy(2,3)", td.Kumaraswamy(t(2.0), t(3.0))),
        ("Kumaraswamy(0.7,1.5)", td.Kumaraswamy(t(0.7), t(1.5))),
        ("Kumaraswamy(50,40)", td.Kumaraswamy(t(50.0), t(40.0))),
    ],
    td.Weibull: lambda t: [
        ("Weibull(1,2)", td.Weibull(t(1.0), t(2.0))),
        ("Weibull(2,0.8)", td.Weibull(t(2.0), t(0.8))),
        ("Weibull(1e3,20)", td.Weibull(t(1000.0), t(20.0))),
    ],
    td.VonMises: lambda t: [
        ("VonMises(0,1)", td.VonMises(t(0.0), t(1.0))),
        ("VonMises(1,3)", td.VonMises(t(1.0), t(3.0))),
        ("VonMises(0.5,1e4)", td.VonMises(t(0.5), t(1e4))),
    ],
    td.ContinuousBernoulli: lambda t: [
        ("CB(0.3)", td.ContinuousBernoulli(t(0.3))),
        ("CB(0.8)", td.ContinuousBernoulli(t(0.8))),
        ("CB(0.4999)", td.ContinuousBernoulli(t(0.4999))),
    ],
    td.Bernoulli: lambda t: [
        ("Bernoulli(0.3)", td.Bernoulli(t(0.3))),
        ("Bernoulli(0.6)", td.Bernoulli(t(0.6))),
        ("Bernoulli(1e-6)", td.Bernoulli(t(1e-6))),
    ],
    td.Binomial: lambda t: [
        ("Binomial(10,0.3)", td.Binomial(t(10.0), t(0.3))),
        ("Binomial(10,0.6)", td.Binomial(t(10.0), t(0.6))),
        ("Binomial(1000,1e-4)", td.Binomial(t(1000.0), t(1e-4))),
    ],
    td.Geometric: lambda t: [
        ("Geometric(0.3)", td.Geometric(t(0.3))),
        ("Geometric(0.6)", td.Geometric(t(0.6))),
        ("Geometric(0.999)", td.Geometric(t(0.999))),
    ],
    td.Poisson: lambda t: [
        ("Poisson(3)", td.Poisson(t(3.0))),
        ("Poisson(0.5)", td.Poisson(t(0.5))),
        ("Poisson(1e4)", td.Poisson(t(1e4))),
    ],
    td.Categorical: lambda t: [
        ("Cat(.2,.3,.5)", td.Categorical(t(0.2, 0.3, 0.5))),
        ("Cat(.5,.25,.25)", td.Categorical(t(0.5, 0.25, 0.25))),
        ("Cat(1e-7,.5,.5)", td.Categorical(t(1e-7, 0.5, 0.5 - 1e-7))),
    ],
    td.OneHotCategorical: lambda t: [
        ("OneHot(.2,.3,.5)", td.OneHotCategorical(t(0.2, 0.3, 0.5))),
        ("OneHot(.5,.25,.25)", td.OneHotCategorical(t(0.5, 0.25, 0.25))),
        ("OneHot(1e-7,.5,.5)", td.OneHotCategorical(t(1e-7, 0.5, 0.5 - 1e-7))),
    ],
    td.Dirichlet: lambda t: [
        ("Dir(1,2,3)", td.Dirichlet(t(1.0, 2.0, 3.0))),
        ("Dir(2,2,2)", td.Dirichlet(t(2.0, 2.0, 2.0))),
        ("Dir(2,3)", td.Dirichlet(t(2.0, 3.0))),
        ("Dir(3e4,2e4)", td.Dirichlet(t(30000.0, 20000.0))),
    ],
    td.MultivariateNormal: lambda t: [
        ("MVN(tril)", td.MultivariateNormal(t(0.0, 1.0), scale_tril=t([1.0, 0.0], [0.5, 2.0]))),
        ("MVN(diag)", td.MultivariateNormal(t(1.0, -1.0), scale_tril=t([1.5, 0.0], [0.0, 0.5]))),
        ("MVN(ρ=0.999)", td.MultivariateNormal(t(0.0, 0.0), t([1.0, 0.999], [0.999, 1.0]))),
    ],
    td.LowRankMultivariateNormal: lambda t: [
        (
            "LowRank(W=[.5,1])",
            td.LowRankMultivariateNormal(t(0.0, 1.0), t([0.5], [1.0]), t(1.0, 2.0)),
        ),
        (
            "LowRank(W=[1,-1])",
            td.LowRankMultivariateNormal(t(1.0, 0.0), t([1.0], [-1.0]), t(0.5, 0.5)),
        ),
        (
            "LowRank(D=1e-4)",
            td.LowRankMultivariateNormal(t(0.0, 0.0), t([1.0], [1.0]), t(1e-4, 1e-4)),
        ),
    ],
}

_INDEPENDENT: dict[str, Callable] = {
    "Ind(N)": lambda t: td.Independent(td.Normal(t(0.0, 1.0), t(1.0, 2.0)), 1),
    "Ind(N')": lambda t: td.Independent(td.Normal(t(0.5, -1.0), t(2.0, 0.5)), 1),
    "Ind(N,1e-3)": lambda t: td.Independent(td.Normal(t(1000.0, 0.0), t(1e-3, 1e-3)), 1),
    "Ind(Gamma)": lambda t: td.Independent(td.Gamma(t(2.0, 3.0), t(1.0, 0.5)), 1),
    "Ind(Gamma')": lambda t: td.Independent(td.Gamma(t(0.5, 3.0), t(2.0, 0.5)), 1),
}


def _independent_cases(t, other: type | None) -> list[Case]:
    ind = {k: f(t) for k, f in _INDEPENDENT.items()}
    if other is None:
        return [
            ("Ind(N) ‖ Ind(N')", ind["Ind(N)"], ind["Ind(N')"]),
            ("Ind(Gamma) ‖ Ind(Gamma')", ind["Ind(Gamma)"], ind["Ind(Gamma')"]),
            ("Ind(N,1e-3) ‖ Ind(N)", ind["Ind(N,1e-3)"], ind["Ind(N)"]),
        ]
    others = FAMILIES[other](t)
    return [
        (f"Ind(N) ‖ {others[0][0]}", ind["Ind(N)"], others[0][1]),
        (f"Ind(N,1e-3) ‖ {others[-1][0]}", ind["Ind(N,1e-3)"], others[-1][1]),
    ]


def _pyro_cases(type_p: type, type_q: type, t) -> list[Case] | None:
    name_p = type_p.__name__
    if name_p == "Delta":
        import pyro.distributions as pdist

        return [
            ("Delta(0.3) ‖ N(0,1)", pdist.Delta(t(0.3)), td.Normal(t(0.0), t(1.0))),
            ("Delta(2) ‖ Poisson(3)", pdist.Delta(t(2.0)), td.Poisson(t(3.0))),
        ]
    if name_p == "MaskedDistribution" and type_q.__name__ == "MaskedDistribution":
        import pyro.distributions as pdist

        mask = torch.tensor([True, False])
        p = pdist.Normal(t(0.0, 1.0), t(1.0, 2.0)).mask(mask)
        q = pdist.Normal(t(1.0, 0.0), t(2.0, 1.0)).mask(mask)
        return [("N.mask([T,F]) ‖ N.mask([T,F])", p, q)]
    return None


def _abstract_cases(type_p: type, type_q: type, t) -> list[Case] | None:
    if type_p is ExponentialFamily and type_q is ExponentialFamily:
        n, g, p = FAMILIES[td.Normal](t), FAMILIES[td.Gamma](t), FAMILIES[td.Poisson](t)
        return [
            (f"{n[0][0]} ‖ {n[1][0]}", n[0][1], n[1][1]),
            (f"{g[0][0]} ‖ {g[1][0]}", g[0][1], g[1][1]),
            (f"{p[0][0]} ‖ {p[1][0]}", p[0][1], p[1][1]),
        ]
    if type_p is td.TransformedDistribution and type_q is td.TransformedDistribution:
        ln = FAMILIES[td.LogNormal](t)
        return [
            (f"{ln[0][0]} ‖ {ln[1][0]}", ln[0][1], ln[1][1]),
            (f"{ln[2][0]} ‖ {ln[0][0]}", ln[2][1], ln[0][1]),
        ]
    if type_p is td.Independent:
        return _independent_cases(t, None if type_q is td.Independent else type_q)
    if type_q is td.Independent:
        flipped = _independent_cases(t, type_p)
        return [(" ‖ ".join(reversed(label.split(" ‖ "))), q, p) for label, p, q in flipped]
    return _pyro_cases(type_p, type_q, t)


def _family_examples(cls: type, t) -> list[tuple[str, Distribution]] | None:
    for family in (cls, *cls.__mro__[1:]):
        if family in FAMILIES:
            if family is not cls and not cls.__module__.startswith("pyro"):
                return None  # a subclass we have no examples of (e.g. Chi2)
            return FAMILIES[family](t)
    return None


def _compatible(p: Distribution, q: Distribution) -> bool:
    from probgen.checks.densities import same_law_view

    return same_law_view(p).event_shape == same_law_view(q).event_shape


def cases_for_pair(type_p: type, type_q: type, dtype: torch.dtype = torch.float64) -> list[Case]:
    """``(label, p, q)`` points for the pair of types, in ``dtype``; ``[]`` if the checker has
    no examples of a family."""
    t = _t(dtype)
    special = _abstract_cases(type_p, type_q, t)
    if special is not None:
        return special
    ps, qs = _family_examples(type_p, t), _family_examples(type_q, t)
    if not ps or not qs:
        return []
    if type_p is type_q:
        combos = [(ps[0], ps[1]), (ps[1], ps[0]), (ps[-1], _near(ps[-1]))]
    else:
        last_p = len(ps) - 1
        first = [(0, 0), (0, 1), (last_p, 0), (last_p, 1)]
        rest = [(i, j) for i in range(len(ps)) for j in range(len(qs)) if (i, j) not in first]
        combos = [(ps[i], qs[j]) for i, j in dict.fromkeys(first + rest)]
    out = []
    for (lp, p), (lq, q) in combos:
        if _compatible(p, q):
            out.append((f"{lp} ‖ {lq}", p, q))
    return out[:3]


def _near(example: tuple[str, Distribution]) -> tuple[str, Distribution]:
    """The hard example moved by a relative 2⁻¹⁰: scales, concentrations and probabilities by
    the factor 1 + 2⁻¹⁰, locations by 2⁻¹⁰ of the scale, a Uniform's width by 2⁻¹⁰."""
    from probgen.checks.densities import _rebuild, given_params

    label, d = example
    h = 2.0**-10
    params = dict(given_params(d))
    for k, v in params.items():
        if k in ("total_count", "loc", "low") or not v.is_floating_point():
            continue
        if k == "probs":
            moved = v * (1 + h)
            params[k] = moved / moved.sum(-1, keepdim=True) if v.dim() else moved.clamp(max=0.999)
        elif k == "high":
            params[k] = v + h * (v - params["low"])
        else:
            params[k] = v * (1 + h)
    if "loc" in params:
        spread = params.get("scale", d.stddev if d.event_shape == () else torch.ones(()))
        params["loc"] = params["loc"] + h * spread
    return f"{label}·(1+2⁻¹⁰)", _rebuild(d, params)


def has_cases(type_p: type, type_q: type) -> bool:
    """Whether :func:`cases_for_pair` has points for the pair."""
    return bool(cases_for_pair(type_p, type_q))
