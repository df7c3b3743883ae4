r"""The ELBO loss of a Pyro model/guide pair, computed lean: what training needs, nothing more.

For a guide whose latent sites are all reparameterized, ``Trace_ELBO`` and
``TraceMeanField_ELBO`` compute, from one guide trace and the model replayed against it,

.. math::
    \mathcal L = \sum_{\text{observed } s} \lambda_s \log p(x_s \mid \cdot)
      - \sum_{\text{latent } s} \lambda_s\, \mathrm{KL}_s,
    \qquad \mathrm{KL}_s = \begin{cases}
      \mathrm{KL}(q_s \,\|\, p_s) & \text{analytic, where a closed form is registered,}\\
      \log q_s(z_s) - \log p_s(z_s) & \text{sampled (Trace_ELBO, or no closed form),}
    \end{cases}

with each site's scale λ (e.g. β) and mask applied (Pyro takes the latent site's scale from the
guide under ``TraceMeanField_ELBO`` and from each trace under ``Trace_ELBO``; the same here), and
``pyro.factor`` sites adding their log-factor. :func:`elbo_loss` returns exactly that value, with
the same samples (the guide runs first, then the model, as in Pyro) but without the work only
general inference needs: score-function parts, subsample pruning, shape validation, host syncs
(``torch_item``) and NaN hooks. It returns the reconstruction and KL parts separately.

Guides with non-reparameterized sites, or sites the model lacks (auxiliary variables), raise
:class:`UnsupportedGuide`: use Pyro's ELBO classes for those. Reference: Pyro's
``pyro/infer/trace_elbo.py`` and ``trace_mean_field_elbo.py`` (v1.9), whose losses this equals
(tested on the same samples).

:class:`PlainParameters` trims another per-step cost of a Pyro model: a
:class:`~pyro.nn.PyroModule` turns every read of a weight into a ``pyro.param`` statement
through the whole handler stack. Inside it, the converted layers that own parameters
(``PyroModule[nn.Linear]``, …) behave as their torch classes, reading the same
``nn.Parameter`` objects, for a step whose optimizer holds those parameters itself (measured:
0.05–0.1 of a hand-written step less at batch 32 on the digits VAE, ``docs/train_vae.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.distributions import Unit
from pyro.distributions.util import scale_and_mask
from pyro.nn.module import PyroModule, _PyroModuleMeta
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import kl_divergence


class PlainParameters:
    """Context: the converted PyroModule layers of ``module`` that own parameters behave as
    their torch classes, so that reading a weight is an attribute lookup, not a ``pyro.param``
    statement (the parameters, their values and gradients are the same objects).

    Layers with Pyro attributes (``PyroParam``, ``PyroSample``) and classes written as
    PyroModules keep their Pyro behaviour. Only for steps that do not use Pyro's parameter
    store (the fast path's own optimizer holds the parameters); not re-entrant.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self._swaps: list[tuple[torch.nn.Module, type, type]] = []
        for m in module.modules():
            cls = type(m)
            base = cls.__bases__[0]
            if (
                isinstance(m, PyroModule)
                and m._parameters
                and not m.__dict__.get("_pyro_params")
                and not m.__dict__.get("_pyro_samples")
                and not issubclass(base, PyroModule)
                and _PyroModuleMeta._pyro_mixin_cache.get(base) is cls
            ):
                self._swaps.append((m, cls, base))

    def __enter__(self) -> PlainParameters:
        for m, _, base in self._swaps:
            m.__class__ = base
        return self

    def __exit__(self, *exc: object) -> None:
        for m, cls, _ in self._swaps:
            m.__class__ = cls


class UnsupportedGuide(NotImplementedError):
    """The guide has a site that :func:`elbo_loss` does not handle (use Pyro's ELBO)."""


def _scaled_sum(value: Any, site: dict[str, Any], batch_numel: int) -> Tensor:
    value = scale_and_mask(value, site["scale"], site["mask"])
    if torch.is_tensor(value):
        return value.sum()
    return torch.as_tensor(value * batch_numel)  # a constant, as TraceMeanField_ELBO counts it


def elbo_loss(
    model: Callable, guide: Callable, *args: Any, analytic: bool = True, **kwargs: Any
) -> tuple[Tensor, Tensor, Tensor]:
    """The negative ELBO and its two parts, from one sample of the guide.

    Args:
        model, guide: Pyro callables taking ``(*args, **kwargs)``.
        analytic: closed-form KL where registered (``TraceMeanField_ELBO``'s estimate), else
            sampled KL everywhere (``Trace_ELBO``'s).

    Returns:
        ``(loss, recon, kl)``: scalar tensors, summed over plates. ``loss`` = −ELBO keeps its
        autograd graph; ``recon`` = −Σ log p(x|z) over observed sites and ``kl`` = the weighted
        KL terms minus any ``pyro.factor`` terms are detached; ``loss`` = ``recon + kl``.

    Raises:
        UnsupportedGuide: for a non-reparameterized guide site or a guide site the model lacks.
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    log_lik = torch.zeros(())
    kl = torch.zeros(())
    seen = set()
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        fn = site["fn"]
        if site["is_observed"]:
            term = _scaled_sum(fn.log_prob(site["value"]), site, 1)
            if isinstance(fn, Unit):
                kl = kl - term  # a factor (e.g. free bits) belongs to the KL part
            else:
                log_lik = log_lik + term
            continue
        seen.add(name)
        guide_site = guide_trace.nodes.get(name)
        if guide_site is None:
            raise UnsupportedGuide(f"latent site {name!r} of the model is not in the guide")
        q = guide_site["fn"]
        if not q.has_rsample:
            raise UnsupportedGuide(f"guide site {name!r} is not reparameterized")
        if analytic:
            try:
                kl = kl + _scaled_sum(kl_divergence(q, fn), guide_site, q.batch_shape.numel())
                continue
            except NotImplementedError:
                pass
        z = guide_site["value"]
        kl = kl + _scaled_sum(q.log_prob(z), guide_site, 1) - _scaled_sum(fn.log_prob(z), site, 1)
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site) and name not in seen:
            raise UnsupportedGuide(f"guide site {name!r} is not a latent site of the model")
    loss = kl - log_lik
    return loss, -log_lik.detach(), kl.detach()
