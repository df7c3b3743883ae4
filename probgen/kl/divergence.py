"""``probgen.kl_divergence``: one entry point for closed-form and Monte Carlo KL."""

from __future__ import annotations

import warnings
from typing import Literal, overload

import torch
from torch.distributions import Distribution

from probgen.kl.monte_carlo import Estimator, check_mc_args, mc_kl
from probgen.kl.policy import mc_is_cheaper
from probgen.kl.registry import lookup
from probgen.kl.result import KLResult
from probgen.kl.validation import check_pair, nonfinite_parameter

__all__ = ["METHODS", "KLMethodWarning", "kl_divergence"]

METHODS: tuple[str, ...] = ("auto", "analytic", "mc")


class KLMethodWarning(UserWarning):
    """``method="auto"`` fell back to Monte Carlo for a pair without a closed form."""


def _no_closed_form(p: Distribution, q: Distribution) -> NotImplementedError:
    return NotImplementedError(
        f"no closed-form KL is registered for p={type(p).__name__}, q={type(q).__name__}; "
        f"use method='mc' (or 'auto') for a Monte Carlo estimate"
    )


def _analytic(p: Distribution, q: Distribution, shape: torch.Size, validated: bool) -> KLResult:
    fn = lookup(p, q)
    if fn is None:
        raise _no_closed_form(p, q)
    value = fn(p, q)
    if value.shape != shape:
        value = value.expand(shape)
    if bool(torch.isnan(value).any()):
        if not validated:
            check_pair(p, q)  # names the invalid parameter behind the NaN, if there is one
        infinite = nonfinite_parameter(p, "p") or nonfinite_parameter(q, "q")
        if infinite is not None:
            raise ValueError(
                f"{infinite}: the KL is undefined there (closed form "
                f"{fn.__module__}.{fn.__name__} gives NaN)"
            )
        raise RuntimeError(
            f"closed form {fn.__module__}.{fn.__name__} returned NaN for valid input "
            f"p={p}, q={q}; please report this"
        )
    return KLResult(value=value, method="analytic", estimator=fn.__name__)


@overload
def kl_divergence(
    p: Distribution,
    q: Distribution,
    method: Literal["auto", "analytic", "mc"] = ...,
    *,
    num_samples: int = ...,
    estimator: Estimator = ...,
    seed: int | None = ...,
    generator: torch.Generator | None = ...,
    validate: bool = ...,
    prefer: Literal["accuracy", "speed"] = ...,
    return_info: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def kl_divergence(
    p: Distribution,
    q: Distribution,
    method: Literal["auto", "analytic", "mc"] = ...,
    *,
    num_samples: int = ...,
    estimator: Estimator = ...,
    seed: int | None = ...,
    generator: torch.Generator | None = ...,
    validate: bool = ...,
    prefer: Literal["accuracy", "speed"] = ...,
    return_info: Literal[True],
) -> KLResult: ...


def kl_divergence(
    p: Distribution,
    q: Distribution,
    method: Literal["auto", "analytic", "mc"] = "auto",
    *,
    num_samples: int = 1000,
    estimator: Estimator = "naive",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    validate: bool = True,
    prefer: Literal["accuracy", "speed"] = "accuracy",
    return_info: bool = False,
) -> torch.Tensor | KLResult:
    r"""KL(p ‖ q) = E_{x∼p}[log p(x) − log q(x)], batchwise.

    Args:
        p, q: distributions with the same ``event_shape`` and broadcastable ``batch_shape``.
        method: ``"analytic"`` uses the registered closed form and raises
            ``NotImplementedError`` (naming both types) when there is none; ``"mc"`` uses the
            Monte Carlo estimator :func:`probgen.mc_kl`; ``"auto"`` (default) uses the closed form
            where one exists, otherwise Monte Carlo. When ``"auto"`` falls back to Monte Carlo
            and ``return_info`` is false, a :class:`KLMethodWarning` says so.
        num_samples, estimator, seed, generator: passed to :func:`probgen.mc_kl` when Monte
            Carlo is used.
        validate: check parameters and shapes first (``ValueError`` naming the bad parameter).
        prefer: with ``method="auto"``: ``"accuracy"`` (default) uses a closed form wherever one
            exists; ``"speed"`` uses Monte Carlo where the benchmarks measured a
            ``num_samples``-sample estimate to be cheaper than the closed form (full-covariance
            MultivariateNormal of dimension ≥ 32 with at most 2 samples; see
            :mod:`probgen.kl.policy`).
        return_info: return a :class:`KLResult` (value, method, standard error, …) instead of
            the tensor alone.

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)``, or a :class:`KLResult`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if prefer not in ("accuracy", "speed"):
        raise ValueError(f"prefer must be 'accuracy' or 'speed', got {prefer!r}")
    # Checked even where a closed form is used, so that a typo does not wait for the first
    # pair without one.
    check_mc_args(num_samples, estimator, seed, generator)
    if validate:
        shape = check_pair(p, q)
    else:
        shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)

    mc_args = dict(
        num_samples=num_samples, estimator=estimator, seed=seed, generator=generator, validate=False
    )
    result: KLResult | None
    if method == "analytic":
        result = _analytic(p, q, shape, validate)
    elif method == "mc":
        result = mc_kl(p, q, **mc_args)
    elif prefer == "speed" and mc_is_cheaper(p, q, num_samples):
        result = mc_kl(p, q, **mc_args)
    else:
        try:
            result = _analytic(p, q, shape, validate)
        except NotImplementedError:
            # No pair registered, or a registered function that covers only some members of
            # its types (e.g. Independent of a Normal, not of a Laplace) declined.
            result = None
    if result is None:
        result = mc_kl(p, q, **mc_args)
        if not return_info:
            warnings.warn(
                f"no closed-form KL for p={type(p).__name__}, q={type(q).__name__}: "
                f"estimated by Monte Carlo ({estimator}, {num_samples} samples). Pass "
                f"method='mc' or return_info=True to make this explicit.",
                KLMethodWarning,
                stacklevel=2,
            )
    return result if return_info else result.value
