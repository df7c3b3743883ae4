r"""Closed-form KL divergences between full-covariance and diagonal Gaussians.

With :math:`L_p, L_q` lower Cholesky factors of the covariances,
:math:`E = L_q^{-1}(L_p - L_q)` (lower triangular, from one triangular solve),
:math:`M = L_q^{-1} L_p = I + E` and :math:`\delta = L_q^{-1}(\mu_p - \mu_q)`,

.. math::

    KL = \tfrac12\bigl(\|M\|_F^2 - d - 2\log\det M + \|\delta\|^2\bigr)
       = \tfrac12\|\delta\|^2 + \tfrac12\sum_{i>j} E_{ij}^2
         + \sum_i \bigl[\tfrac12 (m_{ii}^2 - 1) - \log m_{ii}\bigr],

with :math:`m_{ii} = L_{p,ii}/L_{q,ii}`. Every term is :math:`\ge 0`; the diagonal one is
:math:`g(x) + x^2/2` with :math:`x = (L_{p,ii} - L_{q,ii})/L_{q,ii}` and
:math:`g(x) = x - \log(1 + x)` (:func:`probgen.kl.normal.normal_scale_kl`), and the
differences :math:`L_p - L_q`, :math:`\mu_p - \mu_q` are taken before any solve, so nothing
cancels when p and q are close and KL(p ‖ p) is exactly 0. A diagonal normal
(``Independent(Normal, 1)``) is the case :math:`L = \mathrm{diag}(\sigma)`; against a diagonal
q the solve is a division (O(d²) instead of O(d³)). Derivation: ``docs/kl/multivariate.md``.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from probgen.kl.independent import call_fallback, flatten_independent, register_over_pyro
from probgen.kl.normal import normal_scale_kl
from probgen.kl.registry import register_kl

__all__ = ["diagonal_normal_parts", "mvn_diag_kl", "mvn_kl", "mvn_parts"]


def mvn_kl(
    loc_p: torch.Tensor, tril_p: torch.Tensor, loc_q: torch.Tensor, tril_q: torch.Tensor
) -> torch.Tensor:
    r"""Batchwise KL(N(μ_p, L_p L_pᵀ) ‖ N(μ_q, L_q L_qᵀ)) from Cholesky factors.

    .. math:: KL = \tfrac12\|\delta\|^2 + \tfrac12\sum_{i>j}E_{ij}^2
        + \sum_i \bigl[\tfrac12(m_{ii}^2 - 1) - \log m_{ii}\bigr],
        \quad E = L_q^{-1}(L_p - L_q),\ \delta = L_q^{-1}(\mu_p - \mu_q),\
        m_{ii} = L_{p,ii}/L_{q,ii}.

    Cost O(B·d³) (one triangular solve with d right-hand sides), like torch's.

    Args:
        loc_p, loc_q: means, shape ``(..., d)``.
        tril_p, tril_q: lower-triangular factors with positive diagonals, ``(..., d, d)``.

    Returns:
        Tensor of the broadcast batch shape of the four arguments, ≥ 0.

    Reference: ``docs/kl/multivariate.md``.
    """
    e = torch.linalg.solve_triangular(tril_q, tril_p - tril_q, upper=False)
    off = e.tril(-1).square().sum((-2, -1))
    diag = normal_scale_kl(
        tril_p.diagonal(dim1=-2, dim2=-1), tril_q.diagonal(dim1=-2, dim2=-1)
    ).sum(-1)
    diff = (loc_p - loc_q).unsqueeze(-1)
    batch = torch.broadcast_shapes(diff.shape[:-2], tril_q.shape[:-2])
    delta = torch.linalg.solve_triangular(
        tril_q.expand(batch + tril_q.shape[-2:]), diff.expand(batch + diff.shape[-2:]), upper=False
    )
    maha = delta.square().sum((-2, -1))
    return diag + 0.5 * (off + maha)


def mvn_diag_kl(
    loc_p: torch.Tensor, tril_p: torch.Tensor, loc_q: torch.Tensor, scale_q: torch.Tensor
) -> torch.Tensor:
    r"""Batchwise KL(N(μ_p, L_p L_pᵀ) ‖ N(μ_q, diag(σ_q²))): :func:`mvn_kl` with L_q diagonal.

    .. math:: KL = \tfrac12\sum_i \Bigl(\frac{\mu_{p,i} - \mu_{q,i}}{\sigma_{q,i}}\Bigr)^2
        + \tfrac12\sum_{i>j}\Bigl(\frac{L_{p,ij}}{\sigma_{q,i}}\Bigr)^2
        + \sum_i \bigl[\tfrac12(m_i^2 - 1) - \log m_i\bigr],\quad m_i = L_{p,ii}/\sigma_{q,i}.

    Cost O(B·d²): no solve.

    Args:
        loc_p: ``(..., d)``; tril_p: ``(..., d, d)``; loc_q, scale_q: ``(..., d)``, σ_q > 0.

    Returns:
        Tensor of the broadcast batch shape, ≥ 0.

    Reference: ``docs/kl/multivariate.md``.
    """
    off = (tril_p.tril(-1) / scale_q.unsqueeze(-1)).square().sum((-2, -1))
    diag = normal_scale_kl(tril_p.diagonal(dim1=-2, dim2=-1), scale_q).sum(-1)
    maha = ((loc_p - loc_q) / scale_q).square().sum(-1)
    return diag + 0.5 * (off + maha)


def mvn_parts(d: MultivariateNormal) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc, scale_tril)`` of a MultivariateNormal, the factor without batch broadcasting."""
    return d.loc, d._unbroadcasted_scale_tril


def diagonal_normal_parts(d: Distribution) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(loc, scale)`` if ``d`` amounts to ``Independent(Normal, 1)`` (nested wrappers
    included), else ``None``."""
    base, ndims = flatten_independent(d)
    if ndims != 1 or not isinstance(base, Normal):
        return None
    return base.loc, base.scale


@register_kl(MultivariateNormal, MultivariateNormal)
def _kl_mvn_mvn(p: MultivariateNormal, q: MultivariateNormal) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for two MultivariateNormals: :func:`mvn_kl`.

    Shape: ``broadcast(p.batch_shape, q.batch_shape)``. Reference: ``docs/kl/multivariate.md``.
    """
    return _expand(mvn_kl(*mvn_parts(p), *mvn_parts(q)), p, q)


@register_over_pyro(Independent, MultivariateNormal)
def _kl_diagonal_mvn(p: Independent, q: MultivariateNormal) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for p = Independent(Normal, 1), q MultivariateNormal.

    :func:`mvn_kl` with :math:`L_p = \mathrm{diag}(\sigma_p)`. Other ``Independent`` bases go to
    the function this one replaced (Pyro's, which handles ``Delta``) or raise
    ``NotImplementedError``. Shape: ``broadcast(p.batch_shape, q.batch_shape)``.
    Reference: ``docs/kl/multivariate.md``.
    """
    parts = diagonal_normal_parts(p)
    if parts is None:
        return call_fallback((Independent, MultivariateNormal), p, q)
    loc_p, scale_p = parts
    return _expand(mvn_kl(loc_p, torch.diag_embed(scale_p), *mvn_parts(q)), p, q)


@register_kl(MultivariateNormal, Independent)
def _kl_mvn_diagonal(p: MultivariateNormal, q: Independent) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for p MultivariateNormal, q = Independent(Normal, 1).

    :func:`mvn_diag_kl` (no solve). Other ``Independent`` bases raise ``NotImplementedError``.
    Shape: ``broadcast(p.batch_shape, q.batch_shape)``. Reference: ``docs/kl/multivariate.md``.
    """
    parts = diagonal_normal_parts(q)
    if parts is None:
        return call_fallback((MultivariateNormal, Independent), p, q)
    return _expand(mvn_diag_kl(*mvn_parts(p), *parts), p, q)


def _expand(kl: torch.Tensor, p: Distribution, q: Distribution) -> torch.Tensor:
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    return kl if kl.shape == shape else kl.expand(shape)
