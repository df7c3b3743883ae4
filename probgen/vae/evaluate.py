"""Evaluation of a trained VAE: per-example ELBO, its two terms, and the IWAE bound.

Both run at β = 1 and without free bits, whatever the training objective, so their values are
lower bounds on log p(x) (in nats) and comparable across settings:

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)),      recon = −E_q[log p(x|z)],   kl = KL,

with the KL in closed form (``probgen.elbo.elbo_terms(method="analytic")``) and one z ~ q(z|x)
per example for the reconstruction term; IWAE(K) = log (1/K) Σ_k p(x, z_k)/q(z_k|x) ≥ ELBO
(Burda, Grosse & Salakhutdinov 2016). Each call draws its own seeded samples under
``torch.random.fork_rng``: deterministic, and a training run's RNG stream is left untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


@torch.no_grad()
def evaluate(vae: Any, x: Tensor, seed: int) -> dict[str, float]:
    """Per-example ELBO, recon (−E_q log p(x|z)) and KL at β = 1, no free bits (nats).

    Runs under ``torch.random.fork_rng`` seeded with ``seed``: deterministic, and the training
    RNG stream is left untouched.
    """
    from probgen.elbo import elbo_terms

    free_bits, vae.free_bits = vae.free_bits, None
    try:
        with torch.random.fork_rng(devices=_rng_devices(x)):
            torch.manual_seed(seed)
            terms = elbo_terms(vae.model, vae.guide, x, 1.0, method="analytic")
    finally:
        vae.free_bits = free_bits
    n = x.shape[0]
    recon, kl = -float(terms.recon_total) / n, float(terms.kl_total) / n
    return {"elbo": -(recon + kl), "recon": recon, "kl": kl}


@torch.no_grad()
def iwae(vae: Any, x: Tensor, num_samples: int, seed: int) -> float:
    """Mean over rows of ``x`` of the IWAE bound with ``num_samples`` samples (nats)."""
    from probgen.elbo import iwae_bound

    with torch.random.fork_rng(devices=_rng_devices(x)):
        torch.manual_seed(seed)
        return float(iwae_bound(vae.model, vae.guide, x, num_samples=num_samples).mean())


def _rng_devices(x: Tensor) -> list[int]:
    return [x.device.index or 0] if x.device.type == "cuda" else []
