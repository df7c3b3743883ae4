"""KL divergence: closed forms, Monte Carlo estimators and the entry point.

Importing this package registers probgen's closed forms into torch's KL registry.
"""

# Each closed-form module registers its pairs on import.
from probgen.kl import (  # noqa: F401
    beta,
    continuous_bernoulli,
    cross_family,
    discrete,
    exponential,
    gamma,
    independent,
    location_scale,
    multivariate,
    normal,
    von_mises,
)
from probgen.kl.divergence import METHODS, KLMethodWarning, kl_divergence
from probgen.kl.monte_carlo import ESTIMATORS, mc_kl
from probgen.kl.normal import fused_normal_kl, normal_kl
from probgen.kl.registry import (
    lookup,
    probgen_pairs,
    register_kl,
    registered_pairs,
    torch_kl_only,
)
from probgen.kl.result import KLResult

__all__ = [
    "ESTIMATORS",
    "METHODS",
    "KLMethodWarning",
    "KLResult",
    "fused_normal_kl",
    "kl_divergence",
    "lookup",
    "mc_kl",
    "normal_kl",
    "probgen_pairs",
    "register_kl",
    "registered_pairs",
    "torch_kl_only",
]
