"""probgen: exact, checkable and fast losses for deep generative models.

``import probgen`` registers probgen's numerically stable closed-form KL divergences into
torch's KL registry, so ``torch.distributions.kl_divergence`` and Pyro's
``TraceMeanField_ELBO`` use them. The names built on Pyro or scipy (``elbo_terms``, ``VAE``,
``check_kl``, …) are loaded on first use, so that importing probgen imports neither.
"""

import importlib
from typing import Any

from probgen.kl import (
    KLMethodWarning,
    KLResult,
    kl_divergence,
    mc_kl,
    register_kl,
    torch_kl_only,
)

__version__ = "0.1.0"

# name -> module that defines it, imported on first attribute access
_LAZY = {
    "KLCheckReport": "probgen.checks",
    "assert_kl_close": "probgen.checks",
    "assert_kl_properties": "probgen.checks",
    "check_kl": "probgen.checks",
    "ELBOTerms": "probgen.elbo",
    "elbo_terms": "probgen.elbo",
    "iwae_bound": "probgen.elbo",
    "kl_fallback_sites": "probgen.elbo",
    "VAE": "probgen.vae",
    "GANValue": "probgen.gan",
    "ProbabilitiesAsLogitsWarning": "probgen.gan",
    "value_estimate": "probgen.gan",
    "discriminator_loss": "probgen.gan",
    "generator_loss": "probgen.gan",
    "jsd": "probgen.gan",
    "optimal_logit": "probgen.gan",
    "optimal_value": "probgen.gan",
}

__all__ = [
    "VAE",
    "ELBOTerms",
    "GANValue",
    "KLCheckReport",
    "KLMethodWarning",
    "KLResult",
    "ProbabilitiesAsLogitsWarning",
    "__version__",
    "assert_kl_close",
    "assert_kl_properties",
    "check_kl",
    "discriminator_loss",
    "elbo_terms",
    "generator_loss",
    "iwae_bound",
    "jsd",
    "kl_divergence",
    "kl_fallback_sites",
    "mc_kl",
    "optimal_logit",
    "optimal_value",
    "register_kl",
    "torch_kl_only",
    "value_estimate",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'probgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
