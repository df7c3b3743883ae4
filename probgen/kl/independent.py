r"""Closed-form KL divergence between ``Independent`` distributions.

An ``Independent(base, n)`` reinterprets the ``n`` rightmost batch dimensions of ``base`` as event
dimensions: its density is the product of the base densities over those dimensions, so

.. math::

    KL\bigl(\textstyle\prod_i p_i \,\big\|\, \prod_i q_i\bigr) = \sum_i KL(p_i \,\|\, q_i).

Nested wrappers are flattened first (``Independent(Independent(b, 1), 1)`` is
``Independent(b, 2)``). When ``p`` and ``q`` then reinterpret different numbers of dimensions
but have the same event shape (e.g. ``Independent(Normal, 2)`` against
``Independent(MultivariateNormal, 1)``), both still factorize over the ``min`` of the two
counts, so the KL is the sum over those shared dimensions of the KL between the remaining
factors; this is exact, not an approximation. See ``docs/kl/multivariate.md``.

Pyro registers its own ``(Independent, Independent)`` and ``(Independent, MultivariateNormal)``
pairs when ``pyro.distributions`` is imported, over the same keys. ``import probgen`` must stay
free of Pyro (the command line's ``--help`` does not import it), so if Pyro is imported later, a
one-shot import hook puts probgen's functions back right after Pyro's module has run; Pyro's
functions are kept as fallbacks for the bases probgen has no closed form for (Pyro's ``Delta``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Distribution, Independent, kl_divergence
from torch.distributions import kl as _torch_kl
from torch.distributions.utils import _sum_rightmost

from probgen.kl.registry import KLFn, register_kl

__all__ = ["flatten_independent", "register_over_pyro"]

_PYRO_KL_MODULE = "pyro.distributions.kl"
# pair -> the function in torch's registry before probgen's (Pyro's, once Pyro is imported)
FALLBACKS: dict[tuple[type, type], KLFn | None] = {}
# pair -> probgen's function, to be put back after Pyro's module registers over it
_OVER_PYRO: dict[tuple[type, type], KLFn] = {}


def flatten_independent(d: Distribution) -> tuple[Distribution, int]:
    """``(base, n)`` such that ``d`` is ``Independent(base, n)`` with ``base`` not Independent.

    Nested wrappers add up: ``Independent(Independent(b, 1), 2)`` gives ``(b, 3)``. A
    distribution that is not ``Independent`` gives ``(d, 0)``.
    """
    ndims = 0
    while isinstance(d, Independent):
        ndims += d.reinterpreted_batch_ndims
        d = d.base_dist
    return d, ndims


def _rewrap(base: Distribution, ndims: int) -> Distribution:
    return Independent(base, ndims) if ndims else base


def _describe(d: Distribution) -> str:
    base, ndims = flatten_independent(d)
    return (
        f"{type(d).__name__}({type(base).__name__}, reinterpreted_batch_ndims={ndims}, "
        f"event_shape={tuple(d.event_shape)})"
    )


def _kl_independent_independent(p: Independent, q: Independent) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for two ``Independent`` distributions: a sum of base KLs.

    With ``p = Independent(b_p, n_p)`` and ``q = Independent(b_q, n_q)`` (after flattening
    nested wrappers) and ``s = min(n_p, n_q)``,

    .. math::

        KL(p \| q) = \sum_{\text{rightmost } s \text{ dims}}
            KL\bigl(\mathrm{Ind}(b_p, n_p - s) \,\big\|\, \mathrm{Ind}(b_q, n_q - s)\bigr),

    exact because both factorize over those ``s`` dimensions (for ``n_p = n_q`` it is torch's
    rule: the base KL summed over the reinterpreted dimensions).

    Returns:
        Tensor of shape ``broadcast(p.batch_shape, q.batch_shape)``.

    Raises:
        ValueError: if the event shapes differ (the message names both counts and shapes).
        NotImplementedError: if the remaining factors have no closed form (naming all types).

    Reference: ``docs/kl/multivariate.md`` (section "Independent").
    """
    if p.event_shape != q.event_shape:
        raise ValueError(
            f"KL(p ‖ q) between Independent distributions needs equal event shapes: "
            f"p is {_describe(p)}, q is {_describe(q)}"
        )
    base_p, n_p = flatten_independent(p)
    base_q, n_q = flatten_independent(q)
    shared = min(n_p, n_q)
    inner_p = _rewrap(base_p, n_p - shared)
    inner_q = _rewrap(base_q, n_q - shared)
    try:
        kl = kl_divergence(inner_p, inner_q)
    except NotImplementedError as error:
        raise NotImplementedError(
            f"no closed-form KL for p={_describe(p)}, q={_describe(q)}: the factors "
            f"{type(inner_p).__name__} ‖ {type(inner_q).__name__} have none ({error})"
        ) from error
    return _sum_rightmost(kl, shared)


def call_fallback(pair: tuple[type, type], p: Distribution, q: Distribution) -> torch.Tensor:
    """Call the function probgen's registration of ``pair`` replaced (Pyro's, where Pyro is
    imported), or raise ``NotImplementedError`` naming both distributions."""
    fallback = FALLBACKS.get(pair)
    if fallback is not None:
        try:
            return fallback(p, q)
        except NotImplementedError:
            pass
    raise NotImplementedError(f"no closed-form KL for p={_describe(p)}, q={_describe(q)}")


class _AfterPyroKL(importlib.abc.MetaPathFinder):
    """Finds ``pyro.distributions.kl`` through the other finders and, once that module has run
    (and registered Pyro's pairs), puts probgen's functions back over Pyro's."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != _PYRO_KL_MODULE:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module: Callable[[Any], None] = spec.loader.exec_module

        def exec_then_reregister(module: Any) -> None:
            exec_module(module)
            _reregister()

        spec.loader.exec_module = exec_then_reregister  # type: ignore[method-assign]
        return spec


_HOOK = _AfterPyroKL()


def _reregister() -> None:
    for pair, fn in _OVER_PYRO.items():
        current = _torch_kl._KL_REGISTRY.get(pair)
        if current is not fn:
            FALLBACKS[pair] = current
            register_kl(*pair)(fn)
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def register_over_pyro(type_p: type, type_q: type) -> Callable[[KLFn], KLFn]:
    """``register_kl(type_p, type_q)`` for a pair that Pyro also registers: keeps what it
    replaces as the fallback (:func:`call_fallback`) and re-registers after Pyro's import."""

    def decorator(fn: KLFn) -> KLFn:
        pair = (type_p, type_q)
        FALLBACKS[pair] = _torch_kl._KL_REGISTRY.get(pair)
        _OVER_PYRO[pair] = fn
        if _PYRO_KL_MODULE not in sys.modules and _HOOK not in sys.meta_path:
            sys.meta_path.insert(0, _HOOK)
        return register_kl(type_p, type_q)(fn)

    return decorator


register_over_pyro(Independent, Independent)(_kl_independent_independent)
