"""Checks on the inputs of a KL computation: valid parameters, matching shapes.

Distributions built with ``validate_args=False`` (or under ``python -O``) skip torch's own checks;
probgen checks again before computing, so that bad input is a ``ValueError`` naming the parameter
and the bad value, never a silent NaN.
"""

from __future__ import annotations

import torch
from torch.distributions import (
    Beta,
    Categorical,
    Dirichlet,
    Distribution,
    Independent,
    MixtureSameFamily,
    OneHotCategorical,
    TransformedDistribution,
    constraints,
)
from torch.distributions.utils import lazy_property

__all__ = ["check_distribution", "check_pair", "nonfinite_parameter"]


def _describe_bad(value: torch.Tensor, constraint: constraints.Constraint, ok: torch.Tensor) -> str:
    """The first offending value and its index: the element where the constraint is
    elementwise (also inside ``independent``), else the whole event (simplex, lower Cholesky,
    positive definite) with its batch index."""
    bad = value.detach()
    base = constraint
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    if base is not constraint:
        elementwise = base.check(bad)
        if elementwise.shape == bad.shape and not bool(elementwise.all()):
            ok = elementwise
    if ok.shape == bad.shape:
        index = tuple(int(i) for i in (~ok).nonzero()[0])
        return f"{bad[index].item()!r} at index {index}"
    batch_index = tuple(int(i) for i in (~ok).nonzero()[0])
    event = bad[batch_index]
    shown = event.tolist() if event.numel() <= 16 else f"a tensor of shape {tuple(event.shape)}"
    return f"{shown} at batch index {batch_index}"


def check_distribution(d: Distribution, name: str = "p") -> None:
    """Raise ``ValueError`` if a parameter of ``d`` is NaN or violates its constraint.

    Args:
        d: the distribution. ``Independent`` and ``TransformedDistribution`` are checked through
            their base distribution, ``MixtureSameFamily`` through its mixing and component
            distributions.
        name: how the distribution is called in the error message (``"p"`` or ``"q"``).
    """
    if isinstance(d, Independent):
        check_distribution(d.base_dist, name)
        return
    if isinstance(d, TransformedDistribution):
        check_distribution(d.base_dist, name)
        return
    if isinstance(d, MixtureSameFamily):
        check_distribution(d.mixture_distribution, name)
        check_distribution(d.component_distribution, name)
        return
    for param, constraint in d.arg_constraints.items():
        if isinstance(getattr(type(d), param, None), lazy_property) and param not in d.__dict__:
            # An alternative parametrisation (probs/logits, scale_tril/covariance) that was not
            # given: it is computed from the one that was, which is checked.
            continue
        value = getattr(d, param)
        if not torch.is_tensor(value):
            continue
        if value.is_floating_point() and torch.isnan(value).any():
            nan_index = tuple(int(i) for i in torch.isnan(value).nonzero()[0])
            raise ValueError(
                f"{name}: parameter {param!r} of {type(d).__name__} is NaN at index {nan_index}"
            )
        if constraints.is_dependent(constraint):
            # A constraint that depends on other parameters (Pyro's Delta.v): torch cannot
            # check it either; NaN was checked above.
            continue
        ok = constraint.check(value)
        if not bool(ok.all()):
            raise ValueError(
                f"{name}: parameter {param!r} of {type(d).__name__} must satisfy {constraint}, "
                f"found {_describe_bad(value, constraint, ok)}"
            )


def nonfinite_parameter(d: Distribution, name: str = "p") -> str | None:
    """A description of the first ±inf parameter of ``d`` (through wrappers), or None.

    Infinite parameters pass the constraints (``real``, ``positive``) and some are meaningful
    (a logit of −inf masks a class), so they are not refused up front; this names one when a
    closed form came out NaN."""
    if isinstance(d, (Independent, TransformedDistribution)):
        return nonfinite_parameter(d.base_dist, name)
    if isinstance(d, MixtureSameFamily):
        return nonfinite_parameter(d.mixture_distribution, name) or nonfinite_parameter(
            d.component_distribution, name
        )
    for param in d.arg_constraints:
        if isinstance(getattr(type(d), param, None), lazy_property) and param not in d.__dict__:
            continue
        value = getattr(d, param, None)
        if torch.is_tensor(value) and value.is_floating_point():
            inf = torch.isinf(value.detach())
            if bool(inf.any()):
                index = tuple(int(i) for i in inf.nonzero()[0])
                return (
                    f"{name}: parameter {param!r} of {type(d).__name__} is "
                    f"{value[index].item()!r} at index {index}"
                )
    return None


def _num_classes(d: Distribution) -> int | None:
    """Number of categories of a Categorical or OneHotCategorical, else None."""
    if isinstance(d, Categorical):
        return d._num_events
    if isinstance(d, OneHotCategorical):
        return d.event_shape[-1]
    return None


def _same_law_other_encoding(p: Distribution, q: Distribution) -> bool:
    """Pairs whose event shapes differ only by encoding, and which have closed forms:
    Categorical over K classes (event ()) with OneHotCategorical (event (K,)), and Beta
    (event ()) with a 2-component Dirichlet (event (2,), the Beta's x as (x, 1 − x))."""
    for a, b in ((p, q), (q, p)):
        if isinstance(a, Categorical) and isinstance(b, OneHotCategorical):
            return True  # numbers of classes compared in check_pair
        if isinstance(a, Beta) and isinstance(b, Dirichlet):
            return b.event_shape == (2,)
    return False


def check_pair(p: Distribution, q: Distribution) -> torch.Size:
    """Validate both distributions and their shapes; return the broadcast batch shape.

    Raises:
        TypeError: if ``p`` or ``q`` is not a ``torch.distributions.Distribution``.
        ValueError: on an invalid parameter, different event shapes, or batch shapes that do
            not broadcast.
    """
    for name, d in (("p", p), ("q", q)):
        if not isinstance(d, Distribution):
            raise TypeError(
                f"{name} must be a torch.distributions.Distribution, got {type(d).__name__}"
            )
    check_distribution(p, "p")
    check_distribution(q, "q")
    if p.event_shape != q.event_shape and not _same_law_other_encoding(p, q):
        raise ValueError(
            f"event shapes differ: p {type(p).__name__} has event_shape {tuple(p.event_shape)}, "
            f"q {type(q).__name__} has event_shape {tuple(q.event_shape)}"
        )
    k_p, k_q = _num_classes(p), _num_classes(q)
    if k_p is not None and k_q is not None and k_p != k_q:
        raise ValueError(
            f"numbers of categories differ: p {type(p).__name__} has {k_p}, "
            f"q {type(q).__name__} has {k_q}"
        )
    try:
        return torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    except RuntimeError:
        raise ValueError(
            f"batch shapes do not broadcast: p has batch_shape {tuple(p.batch_shape)}, "
            f"q has batch_shape {tuple(q.batch_shape)}"
        ) from None
