"""The KL registry: probgen's closed forms, registered into torch's own registry.

probgen does not keep a second dispatch table. Every closed form is registered with
:func:`torch.distributions.kl.register_kl`, so that ``torch.distributions.kl_divergence`` and
Pyro's ``TraceMeanField_ELBO`` use it as soon as ``import probgen`` has run. What probgen adds:

* a record of which pairs probgen registered and which torch function each one replaced, so that
  :func:`torch_kl_only` can turn the overrides off (used by the audit that compares the two), and
* :func:`lookup`, which says whether a pair has a closed form without computing it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from torch.distributions import Distribution
from torch.distributions import kl as _torch_kl

__all__ = [
    "KLFn",
    "lookup",
    "probgen_pairs",
    "register_kl",
    "registered_pairs",
    "torch_kl_only",
]

KLFn = Callable[[Distribution, Distribution], "object"]
Pair = tuple[type, type]

# pair -> probgen's function
_PROBGEN: dict[Pair, KLFn] = {}
# pair -> the function torch (or Pyro) had registered before probgen replaced it, or None
_REPLACED: dict[Pair, KLFn | None] = {}


def register_kl(type_p: type, type_q: type) -> Callable[[KLFn], KLFn]:
    """Decorator registering ``fn(p, q)`` as the closed-form KL(p ‖ q) for the pair of types.

    Same contract as :func:`torch.distributions.kl.register_kl` (and registered there), plus a
    record of what the registration replaced::

        @register_kl(Normal, Normal)
        def _kl_normal_normal(p, q): ...
    """
    for name, t in (("type_p", type_p), ("type_q", type_q)):
        if not (isinstance(t, type) and issubclass(t, Distribution)):
            raise TypeError(f"{name} must be a subclass of Distribution, got {t!r}")

    def decorator(fn: KLFn) -> KLFn:
        pair = (type_p, type_q)
        if pair not in _REPLACED:
            _REPLACED[pair] = _torch_kl._KL_REGISTRY.get(pair)
        _PROBGEN[pair] = fn
        _torch_kl._KL_REGISTRY[pair] = fn
        _torch_kl._KL_MEMOIZE.clear()
        return fn

    return decorator


def registered_pairs() -> dict[Pair, KLFn]:
    """Every pair in torch's registry now (torch's, Pyro's once imported, and probgen's)."""
    return dict(_torch_kl._KL_REGISTRY)


def probgen_pairs() -> dict[Pair, KLFn]:
    """The pairs probgen registered, with probgen's functions."""
    return dict(_PROBGEN)


def lookup(p: Distribution, q: Distribution) -> KLFn | None:
    """The closed form torch's dispatch would use for ``(type(p), type(q))``, or ``None``."""
    fn = _torch_kl._KL_MEMOIZE.get((type(p), type(q)))
    if fn is None:
        fn = _torch_kl._dispatch_kl(type(p), type(q))
        _torch_kl._KL_MEMOIZE[type(p), type(q)] = fn
    return None if fn is NotImplemented else fn


@contextlib.contextmanager
def torch_kl_only() -> Iterator[None]:
    """Within the block, torch's registry holds what it held before probgen's registrations.

    Pairs that probgen added (and torch lacks) are removed; pairs that probgen replaced get
    torch's functions back. Everything is restored on exit. Not thread-safe: it edits torch's
    global registry.
    """
    saved = {pair: _torch_kl._KL_REGISTRY.get(pair) for pair in _PROBGEN}
    try:
        for pair, original in _REPLACED.items():
            if original is None:
                _torch_kl._KL_REGISTRY.pop(pair, None)
            else:
                _torch_kl._KL_REGISTRY[pair] = original
        _torch_kl._KL_MEMOIZE.clear()
        yield
    finally:
        for pair, fn in saved.items():
            if fn is None:
                _torch_kl._KL_REGISTRY.pop(pair, None)
            else:
                _torch_kl._KL_REGISTRY[pair] = fn
        _torch_kl._KL_MEMOIZE.clear()
