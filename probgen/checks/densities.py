"""Independent views of torch distributions for the references: float64 copies, single batch
elements, scipy.stats equivalents and same-law views across event spaces.

Nothing here computes a KL. The references (:mod:`probgen.checks.references`) use these helpers
to evaluate densities independently of the closed forms under test: scipy.stats where it has the
family (:func:`scipy_equivalent`), torch's ``log_prob`` in float64 otherwise.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch
import torch.distributions as td
from torch.distributions import Distribution, Independent
from torch.distributions.utils import lazy_property

__all__ = [
    "as_float64",
    "batch_elements",
    "given_params",
    "same_law_view",
    "scipy_equivalent",
]


def _is_masked(d: Distribution) -> bool:
    return type(d).__name__ == "MaskedDistribution" and hasattr(d, "_mask")


def _is_delta(d: Distribution) -> bool:
    return type(d).__name__ == "Delta" and hasattr(d, "v") and hasattr(d, "log_density")


def given_params(d: Distribution) -> dict[str, torch.Tensor]:
    """The parameters ``d`` was built from (``probs`` or ``logits``, not both), by name."""
    out = {}
    for name in d.arg_constraints:
        if isinstance(getattr(type(d), name, None), lazy_property) and name not in d.__dict__:
            continue
        value = getattr(d, name, None)
        if torch.is_tensor(value):
            out[name] = value
    # Once computed, the alternative parametrisation is cached too: keep the primary one.
    if "probs" in out and "logits" in out:
        del out["logits"]
    if "scale_tril" in out:
        out.pop("covariance_matrix", None)
        out.pop("precision_matrix", None)
    elif "covariance_matrix" in out:
        out.pop("precision_matrix", None)
    return out


def _rebuild(d: Distribution, params: dict[str, torch.Tensor]) -> Distribution:
    accepted = inspect.signature(type(d).__init__).parameters
    kwargs = {k: v for k, v in params.items() if k in accepted}
    if "lims" in accepted and hasattr(d, "_lims"):
        kwargs["lims"] = d._lims
    return type(d)(**kwargs, validate_args=False)


def as_float64(d: Distribution) -> Distribution:
    """A copy of ``d`` with every parameter cast to float64 (exactly: the same law)."""
    if isinstance(d, Independent):
        return Independent(as_float64(d.base_dist), d.reinterpreted_batch_ndims)
    if _is_masked(d):
        return type(d)(as_float64(d.base_dist), d._mask)
    if _is_delta(d):
        return type(d)(d.v.double(), d.log_density.double(), event_dim=d.event_dim)
    if type(d) is td.TransformedDistribution:
        return td.TransformedDistribution(as_float64(d.base_dist), d.transforms)
    params = {k: v.double() if v.is_floating_point() else v for k, v in given_params(d).items()}
    return _rebuild(d, params)


def _element(d: Distribution, index: tuple[int, ...]) -> Distribution:
    """The distribution at batch ``index`` of ``d`` (a prefix of its batch shape)."""
    if isinstance(d, Independent):
        return Independent(_element(d.base_dist, index), d.reinterpreted_batch_ndims)
    if _is_masked(d):
        mask = d._mask
        if torch.is_tensor(mask):
            mask = mask.expand(d.batch_shape)[index]
        return type(d)(_element(d.base_dist, index), mask)
    if _is_delta(d):
        v = d.v.expand(d.batch_shape + d.event_shape)[index]
        return type(d)(v, d.log_density.expand(d.batch_shape)[index], event_dim=d.event_dim)
    if type(d) is td.TransformedDistribution:
        return td.TransformedDistribution(_element(d.base_dist, index), d.transforms)
    params = {}
    for name, value in given_params(d).items():
        event_dim = getattr(d.arg_constraints[name], "event_dim", 0)
        param_event = value.shape[value.dim() - event_dim :] if event_dim else torch.Size()
        params[name] = value.expand(d.batch_shape + param_event)[index]
    return _rebuild(d, params)


def batch_elements(d: Distribution, shape: torch.Size) -> list[Distribution]:
    """``d`` expanded to batch ``shape``, as a list of its elements in row-major order."""
    d = d.expand(shape) if d.batch_shape != shape else d
    return [_element(d, index) for index in np.ndindex(*shape)] if shape else [d]


def same_law_view(d: Distribution) -> Distribution:
    """A distribution with the same law in the smallest event space: a two-component
    ``Dirichlet([a, b])`` is ``Beta(a, b)`` on its first coordinate, a ``OneHotCategorical`` is
    the ``Categorical`` of its index. Other distributions are returned unchanged."""
    if isinstance(d, td.Dirichlet) and d.event_shape == (2,):
        c = d.concentration
        return td.Beta(c[..., 0], c[..., 1], validate_args=False)
    if isinstance(d, td.OneHotCategorical):
        return td.Categorical(probs=d.probs, validate_args=False)
    return d


def to_view_space(d: Distribution, view: Distribution, x: torch.Tensor) -> torch.Tensor:
    """Map a point ``x`` of ``view``'s event space into ``d``'s event space."""
    if d is view:
        return x
    if isinstance(d, td.Dirichlet):
        return torch.stack([x, 1 - x], -1)
    if isinstance(d, td.OneHotCategorical):
        return torch.nn.functional.one_hot(x.long(), d.event_shape[-1]).to(d.probs.dtype)
    raise TypeError(f"no view for {type(d).__name__}")


def _f(x: torch.Tensor) -> float:
    return float(x.detach().double())


def scipy_equivalent(d: Distribution):
    """The frozen ``scipy.stats`` distribution with the law of ``d`` (a scalar-batch,
    univariate distribution), or ``None`` where scipy has no such family."""
    from scipy import stats

    if d.batch_shape != torch.Size() or d.event_shape != torch.Size():
        return None
    if _is_masked(d) or _is_delta(d):
        return None
    # Most specific first: several families subclass others (Chi2 ⊂ Gamma, HalfNormal ⊂ TD).
    table = [
        (td.Chi2, lambda: stats.chi2(2 * _f(d.concentration))),
        (td.Exponential, lambda: stats.expon(scale=1 / _f(d.rate))),
        (td.Gamma, lambda: stats.gamma(_f(d.concentration), scale=1 / _f(d.rate))),
        (td.Normal, lambda: stats.norm(_f(d.loc), _f(d.scale))),
        (td.Laplace, lambda: stats.laplace(_f(d.loc), _f(d.scale))),
        (td.Cauchy, lambda: stats.cauchy(_f(d.loc), _f(d.scale))),
        (td.Gumbel, lambda: stats.gumbel_r(_f(d.loc), _f(d.scale))),
        (td.HalfNormal, lambda: stats.halfnorm(scale=_f(d.scale))),
        (td.LogNormal, lambda: stats.lognorm(_f(d.scale), scale=math.exp(_f(d.loc)))),
        (td.Beta, lambda: stats.beta(_f(d.concentration1), _f(d.concentration0))),
        (td.Uniform, lambda: stats.uniform(_f(d.low), _f(d.high) - _f(d.low))),
        (td.Pareto, lambda: stats.pareto(_f(d.alpha), scale=_f(d.scale))),
        (td.Weibull, lambda: stats.weibull_min(_f(d.concentration), scale=_f(d.scale))),
        (td.StudentT, lambda: stats.t(_f(d.df), _f(d.loc), _f(d.scale))),
        (td.VonMises, lambda: stats.vonmises(_f(d.concentration), loc=_f(d.loc))),
        (td.Poisson, lambda: stats.poisson(_f(d.rate))),
        (td.Bernoulli, lambda: stats.bernoulli(_f(d.probs))),
        (td.Geometric, lambda: stats.geom(_f(d.probs), loc=-1)),
        (td.Binomial, lambda: stats.binom(int(_f(d.total_count)), _f(d.probs))),
    ]
    for family, make in table:
        if type(d) is family or (isinstance(d, family) and type(d).__module__.startswith("pyro")):
            return make()
    return None
