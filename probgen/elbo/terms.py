r"""The ELBO of a Pyro model/guide pair, split into its terms, site by site.

For a model p(x, z) and a guide q(z | x), with observed sites x_s and latent sites z_t,

.. math::
    \mathrm{ELBO} = \sum_s E_q[\log p(x_s \mid \cdot)] - \sum_t KL_t + \sum_f \log \phi_f,

where KL_t = E_q[log q(z_t | ·) − log p(z_t | ·)] (the closed form KL(q(z_t)‖p(z_t)) when one is
registered and ``method="analytic"``, else its one-sample estimate per particle) and φ_f are
``pyro.factor`` sites of the model. Every term is scaled and masked as Pyro scales it (plates
with subsampling, ``poutine.scale``, β), so the totals are exactly what Pyro optimizes:
``method="analytic"`` reproduces ``TraceMeanField_ELBO`` and ``method="mc"`` ``Trace_ELBO``,
sample for sample. Derivation: ``docs/elbo.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pyro.distributions import Unit
from pyro.distributions.util import scale_and_mask
from pyro.infer.enum import get_importance_trace
from pyro.poutine import Trace
from torch import Tensor

from probgen.kl import kl_divergence, lookup

__all__ = ["ELBOTerms", "elbo_terms", "kl_fallback_sites"]

KLMethod = Literal["analytic", "mc"]


@dataclass(frozen=True)
class ELBOTerms:
    """The terms of an ELBO estimate, averaged over particles.

    Each value is a scalar tensor summed over the site's plates (so over the data batch: divide
    by the batch size for per-example values), and keeps its autograd graph.

    Attributes:
        recon: observed site → E_q[log p(x | z)] (the reconstruction term, nats).
        kl: latent site → its KL term (as weighted in the objective, e.g. by β).
        kl_method: latent site → ``"analytic"`` (closed form) or ``"mc"`` (sampled).
        kl_stderr: latent site → standard error over particles of a sampled KL (``None`` for a
            closed form, or with a single particle).
        factors: ``pyro.factor`` site → its log-factor (e.g. the free-bits correction).
        num_particles: the number of samples averaged over.
        elbo_stderr: standard error of ``elbo`` over particles (``None`` with one particle).
    """

    recon: dict[str, Tensor]
    kl: dict[str, Tensor]
    kl_method: dict[str, KLMethod]
    kl_stderr: dict[str, Tensor | None]
    factors: dict[str, Tensor] = field(default_factory=dict)
    num_particles: int = 1
    elbo_stderr: Tensor | None = None

    @staticmethod
    def _sum(values: dict[str, Tensor]) -> Tensor:
        return sum(values.values(), torch.zeros(()))

    @property
    def recon_total(self) -> Tensor:
        """Σ over observed sites of E_q[log p(x | z)]."""
        return self._sum(self.recon)

    @property
    def kl_total(self) -> Tensor:
        """Σ over latent sites of the KL terms."""
        return self._sum(self.kl)

    @property
    def factor_total(self) -> Tensor:
        """Σ over factor sites."""
        return self._sum(self.factors)

    @property
    def elbo(self) -> Tensor:
        """recon_total − kl_total + factor_total."""
        return self.recon_total - self.kl_total + self.factor_total

    @property
    def loss(self) -> Tensor:
        """−ELBO, what Pyro's ``loss`` returns."""
        return -self.elbo

    def __repr__(self) -> str:
        def show(d: dict[str, Tensor]) -> str:
            return ", ".join(f"{k}={float(v.detach()):.6g}" for k, v in d.items())

        return (
            f"ELBOTerms(elbo={float(self.elbo.detach()):.6g}, recon[{show(self.recon)}], "
            f"kl[{show(self.kl)}], kl_method={self.kl_method}, factors[{show(self.factors)}], "
            f"num_particles={self.num_particles})"
        )


def _is_factor(site: dict[str, Any]) -> bool:
    return isinstance(site["fn"], Unit) or bool(site["infer"].get("is_auxiliary", False))


def _traces(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, max_plate_nesting: float
) -> tuple[Trace, Trace]:
    # The same call, in the same order of random draws, as Trace_ELBO._get_trace.
    return get_importance_trace("flat", max_plate_nesting, model, guide, args, kwargs)


def _closed_form_kl(q: Any, p: Any) -> Tensor | None:
    """KL(q ‖ p) in closed form, or None where there is none: no registered pair, or a
    registered function that declines these members of its types (``Independent`` of a pair
    without a closed form), which ``TraceMeanField_ELBO`` also treats as "sample it"."""
    if lookup(q, p) is None:
        return None
    try:
        return kl_divergence(q, p, method="analytic", validate=False)
    except NotImplementedError:
        return None


def _particle(
    model_trace: Trace, guide_trace: Trace, method: KLMethod
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, KLMethod], dict[str, Tensor]]:
    recon: dict[str, Tensor] = {}
    kl: dict[str, Tensor] = {}
    kl_method: dict[str, KLMethod] = {}
    factors: dict[str, Tensor] = {}
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        if site["is_observed"]:
            (factors if _is_factor(site) else recon)[name] = site["log_prob_sum"]
            continue
        if name not in guide_trace.nodes:
            raise ValueError(f"latent site {name!r} of the model is not sampled by the guide")
        guide_site = guide_trace.nodes[name]
        q, p = guide_site["fn"], site["fn"]
        value = _closed_form_kl(q, p) if method == "analytic" else None
        if value is not None:
            value = scale_and_mask(value, scale=guide_site["scale"], mask=guide_site["mask"])
            if torch.is_tensor(value):
                kl[name] = value.sum()
            else:  # a constant KL, as TraceMeanField_ELBO counts it
                kl[name] = torch.tensor(value * q.batch_shape.numel())
            kl_method[name] = "analytic"
        else:
            kl[name] = guide_site["log_prob_sum"] - site["log_prob_sum"]
            kl_method[name] = "mc"
    # Sites of the guide that the model lacks (auxiliary variables): −log q enters the ELBO.
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and name not in model_trace.nodes:
            kl[name] = site["log_prob_sum"]
            kl_method[name] = "mc"
    return recon, kl, kl_method, factors


def _mean_and_stderr(values: list[Tensor]) -> tuple[Tensor, Tensor | None]:
    stacked = torch.stack([torch.as_tensor(v) for v in values])
    mean = stacked.sum(0) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, stacked.detach().std(0) / math.sqrt(len(values))


def elbo_terms(
    model: Callable,
    guide: Callable,
    *args: Any,
    method: KLMethod = "analytic",
    num_particles: int = 1,
    max_plate_nesting: float = float("inf"),
    **kwargs: Any,
) -> ELBOTerms:
    """The ELBO of ``model``/``guide`` at ``(*args, **kwargs)``, term by term and site by site.

    ``method="analytic"``: each latent site's KL is the registered closed form
    KL(q ‖ p) (through :func:`probgen.kl_divergence`) where one exists, else the one-sample
    estimate log q(z) − log p(z): exactly ``TraceMeanField_ELBO``'s estimate, including its
    silent fallback, which here is reported in ``kl_method``. ``method="mc"``: every KL is
    sampled, and the total is exactly ``Trace_ELBO``'s. With the same random state (e.g.
    ``pyro.set_rng_seed``) the samples are the same as those of Pyro's estimators.

    Args:
        model, guide: Pyro callables taking ``(*args, **kwargs)``.
        method: ``"analytic"`` or ``"mc"``.
        num_particles: samples z ∼ q averaged over (≥ 1); with ≥ 2, standard errors are given.
        max_plate_nesting: as in Pyro's ELBO classes (used by its validation checks).

    Returns:
        :class:`ELBOTerms` (scalar tensors, summed over plates, averaged over particles).

    Raises:
        ValueError: on an unknown method, ``num_particles < 1``, or a model latent site that
            the guide does not sample.
    """
    if method not in ("analytic", "mc"):
        raise ValueError(f"method must be 'analytic' or 'mc', got {method!r}")
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"num_particles must be an integer ≥ 1, got {num_particles!r}")

    parts = []
    for _ in range(num_particles):
        model_trace, guide_trace = _traces(model, guide, args, kwargs, max_plate_nesting)
        parts.append(_particle(model_trace, guide_trace, method))

    def collect(i: int) -> dict[str, list[Tensor]]:
        out: dict[str, list[Tensor]] = {}
        for part in parts:
            for name, value in part[i].items():
                out.setdefault(name, []).append(value)
        return out

    recon = {k: _mean_and_stderr(v)[0] for k, v in collect(0).items()}
    factors = {k: _mean_and_stderr(v)[0] for k, v in collect(3).items()}
    kl_method = parts[0][2]
    kl: dict[str, Tensor] = {}
    kl_stderr: dict[str, Tensor | None] = {}
    for name, values in collect(1).items():
        kl[name], se = _mean_and_stderr(values)
        kl_stderr[name] = se if kl_method[name] == "mc" else None
    per_particle = [
        sum(p[0].values(), torch.zeros(()))
        - sum(p[1].values(), torch.zeros(()))
        + sum(p[3].values(), torch.zeros(()))
        for p in parts
    ]
    return ELBOTerms(
        recon=recon,
        kl=kl,
        kl_method=kl_method,
        kl_stderr=kl_stderr,
        factors=factors,
        num_particles=num_particles,
        elbo_stderr=_mean_and_stderr(per_particle)[1],
    )


def kl_fallback_sites(
    model: Callable, guide: Callable, *args: Any, **kwargs: Any
) -> dict[str, tuple[str, str]]:
    """The latent sites whose KL ``TraceMeanField_ELBO`` would *sample* (no closed form).

    Runs the guide and the model once. Returns ``{site: (guide type, prior type)}`` for every
    latent site whose pair (q, p) has no registered closed form; empty when every KL is exact.
    Register a closed form with :func:`probgen.register_kl` to remove a site from this list.
    """
    model_trace, guide_trace = _traces(model, guide, args, kwargs, float("inf"))
    out: dict[str, tuple[str, str]] = {}
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and name in guide_trace.nodes:
            q, p = guide_trace.nodes[name]["fn"], site["fn"]
            if _closed_form_kl(q, p) is None:
                out[name] = (type(q).__name__, type(p).__name__)
    return out
