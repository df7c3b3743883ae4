r"""A high-precision reference for Gaussian pairs in :math:`\mathbb R^d`.

.. math::
    \mathrm{KL}(\mathcal N(\mu_p,\Sigma_p)\,\|\,\mathcal N(\mu_q,\Sigma_q)) = \tfrac12\left[
    \operatorname{tr}(\Sigma_q^{-1}\Sigma_p) + (\mu_q-\mu_p)^\top\Sigma_q^{-1}(\mu_q-\mu_p) - d
    + \log\det\Sigma_q - \log\det\Sigma_p\right]

evaluated with mpmath at 50 significant digits, from the parameters each distribution was built
from (``scale_tril``, ``covariance_matrix`` or ``precision_matrix``; ``cov_factor`` and
``cov_diag``; the scales of an ``Independent(Normal, 1)``), so the only error is the final
rounding to float64. Reference: Rasmussen & Williams, *Gaussian Processes for Machine Learning*
(2006), eq. (A.23).
"""

from __future__ import annotations

import torch.distributions as td
from torch.distributions import Distribution

from probgen.checks.report import Reference

__all__ = ["gaussian_kl_mpmath", "gaussian_moments_mpmath"]

_DPS = 50


def _mat(t):
    import mpmath

    return mpmath.matrix(t.detach().double().tolist())


def gaussian_moments_mpmath(d: Distribution):
    """``(mean, covariance)`` of a Gaussian ``d`` with batch shape ``()`` and event shape
    ``(k,)`` as mpmath matrices, or ``None`` if ``d`` is not such a Gaussian."""
    import mpmath

    if d.batch_shape != () or len(d.event_shape) != 1:
        return None
    if isinstance(d, td.Independent):
        base = d.base_dist
        if not isinstance(base, td.Normal) or d.reinterpreted_batch_ndims != 1:
            return None
        mean = _mat(base.loc)
        scale = _mat(base.scale)
        cov = mpmath.diag([s**2 for s in scale])
        return mean, cov
    if isinstance(d, td.LowRankMultivariateNormal):
        w = _mat(d.cov_factor)
        return _mat(d.loc), w * w.T + mpmath.diag(list(_mat(d.cov_diag)))
    if isinstance(d, td.MultivariateNormal):
        if "scale_tril" in d.__dict__:
            tril = _mat(d.scale_tril)
            return _mat(d.loc), tril * tril.T
        if "covariance_matrix" in d.__dict__:
            return _mat(d.loc), _mat(d.covariance_matrix)
        return _mat(d.loc), mpmath.inverse(_mat(d.precision_matrix))
    return None


def gaussian_kl_mpmath(p: Distribution, q: Distribution) -> Reference | None:
    """The Gaussian KL(p ‖ q) at 50 digits, or ``None`` when p or q is not a Gaussian in
    :math:`\\mathbb R^d` (see :func:`gaussian_moments_mpmath`)."""
    import mpmath

    with mpmath.workdps(_DPS):
        mp, mq = gaussian_moments_mpmath(p), gaussian_moments_mpmath(q)
        if mp is None or mq is None:
            return None
        (mu_p, cov_p), (mu_q, cov_q) = mp, mq
        k = cov_p.rows
        inv_q = mpmath.inverse(cov_q)
        delta = mu_q - mu_p
        trace = sum((inv_q * cov_p)[i, i] for i in range(k))
        maha = (delta.T * inv_q * delta)[0, 0]
        logdet = mpmath.log(mpmath.det(cov_q)) - mpmath.log(mpmath.det(cov_p))
        value = (trace + maha - k + logdet) / 2
        return Reference(
            float(value),
            abs(float(value)) * 2**-52 + 1e-300,
            "mpmath closed form",
            f"Gaussian KL at {_DPS} digits, d={k}",
        )
