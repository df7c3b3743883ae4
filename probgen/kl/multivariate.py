"""Closed-form KL divergences between multivariate Gaussians.

Registers (on import) MultivariateNormal ‖ MultivariateNormal, LowRankMultivariateNormal ‖
LowRankMultivariateNormal, the two mixed pairs, and each of them against a diagonal normal
(``Independent(Normal, 1)``). The formulas live in :mod:`probgen.kl.mvn` (Cholesky factors) and
:mod:`probgen.kl.low_rank` (diagonal plus low rank); the math is in ``docs/kl/multivariate.md``.
"""

from probgen.kl.low_rank import chol1p, low_rank_kl, ratio_minus_log
from probgen.kl.mvn import mvn_diag_kl, mvn_kl

__all__ = ["chol1p", "low_rank_kl", "mvn_diag_kl", "mvn_kl", "ratio_minus_log"]
