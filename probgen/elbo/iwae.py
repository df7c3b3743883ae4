r"""The importance-weighted bound (IWAE): a log-likelihood estimate per example.

With K samples :math:`z_{ik} \sim q(z \mid x_i)` and weights
:math:`w_{ik} = p(x_i, z_{ik}) / q(z_{ik} \mid x_i)`,

.. math::
    \mathcal L_K(x_i) = \log \frac1K \sum_{k=1}^K w_{ik}, \qquad
    \mathrm{ELBO}(x_i) = E[\mathcal L_1] \le E[\mathcal L_K] \le E[\mathcal L_{K+1}]
    \le \log p(x_i),

and :math:`\mathcal L_K \to \log p(x_i)` as K → ∞ (Burda, Grosse & Salakhutdinov 2016,
"Importance weighted autoencoders", theorem 1). Computed as a log-sum-exp, so that weights of
−1000 nats do not underflow. β and other ``poutine.scale`` weights are ignored (unscaled log
densities: the bound is on the true log-likelihood), masks are honoured, and ``pyro.factor``
sites (e.g. the free-bits correction) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine import Trace
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor

from probgen.elbo.terms import _is_factor

__all__ = ["iwae_bound"]


def _per_example(site: dict[str, Any], plate: str, size: int | None) -> Tensor:
    """The site's unscaled, masked log-density summed over everything but the plate ``plate``:
    shape ``(N,)``."""
    frames = [f for f in site["cond_indep_stack"] if f.name == plate]
    if not frames:
        raise ValueError(
            f"site {site['name']!r} is not inside the plate {plate!r}: the IWAE bound needs "
            f"every site to be local to an example (set batch_plate to the data plate's name)"
        )
    lp = scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
    dim = frames[0].dim
    lp = lp.expand(site["fn"].batch_shape) if lp.dim() < -dim else lp
    lp = lp.movedim(dim, 0)
    if size is not None and lp.shape[0] != size:
        raise ValueError(
            f"site {site['name']!r} has {lp.shape[0]} rows in plate {plate!r}, expected {size}"
        )
    return lp.reshape(lp.shape[0], -1).sum(1)


def _log_weights(model_trace: Trace, guide_trace: Trace, plate: str) -> Tensor:
    log_w: Tensor | None = None
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] != "sample" or _is_factor(site):
                continue
            term = sign * _per_example(site, plate, None if log_w is None else log_w.shape[0])
            log_w = term if log_w is None else log_w + term
    if log_w is None:
        raise ValueError("the model has no sample sites")
    return log_w


def iwae_bound(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 100,
    batch_plate: str = "data",
    **kwargs: Any,
) -> Tensor:
    """The IWAE bound :math:`\\log \\frac1K \\sum_k p(x_i, z_{ik}) / q(z_{ik} \\mid x_i)` per
    example (see the module docstring).

    Args:
        model, guide: Pyro callables taking ``(*args, **kwargs)``; every sample site must lie in
            the plate ``batch_plate`` (one row per example).
        num_samples: K ≥ 1 (K = 1 gives the per-example ELBO with sampled KL).
        batch_plate: name of the data plate (the VAE's is ``"data"``); not passed on.

    Returns:
        Tensor of shape ``(N,)``: the bound for each example, in nats. Runs the guide and model
        K times in sequence; wrap in ``torch.no_grad()`` for evaluation.

    Raises:
        ValueError: on ``num_samples < 1`` or a site outside ``batch_plate``.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer ≥ 1, got {num_samples!r}")
    log_ws = []
    for _ in range(num_samples):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        guide_trace.compute_log_prob()
        model_trace.compute_log_prob()
        log_ws.append(_log_weights(model_trace, guide_trace, batch_plate))
    return torch.logsumexp(torch.stack(log_ws), dim=0) - math.log(num_samples)
