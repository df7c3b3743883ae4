"""probgen: exact, checkable and fast losses for deep generative models.

``import probgen`` registers probgen's numerically stable closed-form KL divergences into
torch's KL registry, so ``torch.distributions.kl_divergence`` and Pyro's
``TraceMeanField_ELBO`` use them.
"""

from probgen.kl import (
    KLMethodWarning,
    KLResult,
    kl_divergence,
    mc_kl,
    register_kl,
    torch_kl_only,
)

__version__ = "0.1.0"

__all__ = [
    "KLMethodWarning",
    "KLResult",
    "__version__",
    "kl_divergence",
    "mc_kl",
    "register_kl",
    "torch_kl_only",
]
