r"""Closed-form KL divergences involving LowRankMultivariateNormal, Σ = W Wᵀ + diag(D).

**Low rank ‖ low rank** (and against a diagonal normal, the case W = 0) never builds a d × d
matrix. Write each Gaussian as the marginal of :math:`w \sim N(0, I_r)`,
:math:`x \mid w \sim N(\mu + W w, D)` (ranks padded with zero columns to a common r). The chain
rule of KL gives

.. math::

    KL(p_x \| q_x) = \underbrace{KL(p_{x,w} \| q_{x,w})}_{\text{joint}}
        - \underbrace{E_{p(x)}\, KL(p(w \mid x) \| q(w \mid x))}_{\text{posterior}},

where the joint term is diagonal,
:math:`\tfrac12\sum_i [\rho_i - 1 - \log\rho_i] + \tfrac12\|D_q^{-1/2}\Delta W\|_F^2
+ \tfrac12\|D_q^{-1/2}\Delta\mu\|^2` (:math:`\rho = D_p/D_q`), and the posterior term is a KL
between r-dimensional Gaussians with precisions :math:`C = I + W^\top D^{-1} W` (the
capacitance matrices), evaluated from the differences :math:`\Delta W, \Delta D, \Delta C`
with a Cholesky factorization of :math:`I + T` that returns :math:`\mathrm{chol}(I + T) - I`
directly (:func:`chol1p`). Both terms are sums of non-negative pieces that vanish with the
differences, so they are each O(‖Δ‖²) and their difference loses at most a factor
joint/result (bounded by the conditioning, not by how close p and q are). Cost O(B·(d r² + r³)).

**Low rank ↔ full covariance**: the low-rank side is factorized densely (Cholesky of
W Wᵀ + diag(D), O(B·d³)) and :func:`probgen.kl.mvn.mvn_kl` is used; the full-covariance side
needs O(d³) work anyway for a stable result. Derivation: ``docs/kl/multivariate.md``.
"""

from __future__ import annotations

import torch
from torch.distributions import Independent, LowRankMultivariateNormal, MultivariateNormal

from probgen.kl.independent import call_fallback
from probgen.kl.mvn import _expand, diagonal_normal_parts, mvn_kl, mvn_parts
from probgen.kl.registry import register_kl
from probgen.kl.stable import x_minus_log1p

__all__ = ["chol1p", "low_rank_kl", "ratio_minus_log"]


def ratio_minus_log(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""ρ − 1 − log ρ with ρ = a/b, for positive a, b: g((a − b)/b) where |a − b| ≤ b/2 (the
    difference is exact there), ρ − 1 − (log a − log b) elsewhere. Broadcast shape, ≥ 0."""
    x = (a - b) / b
    near = x.abs() <= 0.5
    if bool(near.all()):
        return x_minus_log1p(x)
    far = a / b - 1 - (torch.log(a) - torch.log(b))
    # The far elements are given x = 1 (outside x_minus_log1p's series range, which it
    # evaluates on a gather of its small arguments): their value is discarded.
    return torch.where(near, x_minus_log1p(torch.where(near, x, 1.0)), far.clamp_min(0))


def chol1p(t: torch.Tensor) -> torch.Tensor:
    r"""F = chol(I + T) − I for symmetric T with I + T positive definite, ``(..., n, n)``.

    Cholesky's recurrence written for the deviation from I: with
    :math:`s_j = T_{jj} - \sum_{k<j} F_{jk}^2`,
    :math:`F_{jj} = s_j / (1 + \sqrt{1 + s_j})` and
    :math:`F_{ij} = (T_{ij} - \sum_{k<j} F_{ik}F_{jk}) / (1 + F_{jj})` for i > j, so F keeps
    its relative accuracy however small T is. A loop over the n columns (n is a rank here),
    vectorized over the batch.
    """
    n = t.shape[-1]
    rows = torch.arange(n, device=t.device)
    cols: list[torch.Tensor] = []
    for j in range(n):
        if cols:
            prev = torch.stack(cols, -1)  # (..., n, j)
            row_j = prev[..., j, :]
            s = t[..., j, j] - row_j.square().sum(-1)
            col = t[..., :, j] - (prev @ row_j.unsqueeze(-1)).squeeze(-1)
        else:
            s = t[..., j, j]
            col = t[..., :, j]
        f_jj = s / (1 + torch.sqrt(1 + s))
        col = torch.where(rows > j, col / (1 + f_jj).unsqueeze(-1), 0.0)
        cols.append(torch.where(rows == j, f_jj.unsqueeze(-1), col))
    return torch.stack(cols, -1)


def _pad_rank(w: torch.Tensor, r: int) -> torch.Tensor:
    return torch.nn.functional.pad(w, (0, r - w.shape[-1])) if w.shape[-1] < r else w


def low_rank_kl(
    loc_p: torch.Tensor,
    factor_p: torch.Tensor,
    diag_p: torch.Tensor,
    loc_q: torch.Tensor,
    factor_q: torch.Tensor,
    diag_q: torch.Tensor,
    capacitance_tril_p: torch.Tensor | None = None,
    capacitance_tril_q: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Batchwise KL(N(μ_p, W_p W_pᵀ + D_p) ‖ N(μ_q, W_q W_qᵀ + D_q)) in O(d r² + r³).

    .. math::

        2\,KL = \sum_i(\rho_i - 1 - \log\rho_i) + \|D_q^{-1/2}\Delta W\|_F^2
            - \phi(I + F) - \|L_{C_q}^\top \Delta H\, \Sigma_p^{1/2}\|_F^2
            + \|D_q^{-1/2}\Delta\mu\|^2 - \|L_{C_q}^{-1} W_q^\top D_q^{-1}\Delta\mu\|^2,

    with :math:`\rho = D_p/D_q`, :math:`C = I + W^\top D^{-1}W = L_C L_C^\top`,
    :math:`I + F = \mathrm{chol}(I + L_{C_p}^{-1}(C_q - C_p)L_{C_p}^{-\top})`,
    :math:`\phi(I + F) = \sum_{i>j}F_{ij}^2 + \sum_i[2g(F_{ii}) + F_{ii}^2]` and
    :math:`\Delta H = C_p^{-1}W_p^\top D_p^{-1} - C_q^{-1}W_q^\top D_q^{-1}`, all computed from
    the differences of the parameters (see the module docstring). The covariance part and the
    mean part are each clamped at 0.

    Args:
        loc_p, loc_q: ``(..., d)``; factor_p, factor_q: ``(..., d, r_p)``, ``(..., d, r_q)``
            (ranks may differ, including 0); diag_p, diag_q: ``(..., d)``, positive.
        capacitance_tril_p, capacitance_tril_q: optional lower Cholesky factors of
            I + WᵀD⁻¹W for p and q, ``(..., r_p, r_p)``, ``(..., r_q, r_q)`` (a
            ``LowRankMultivariateNormal`` computes them at construction); computed if ``None``.

    Returns:
        Tensor of the broadcast batch shape, ≥ 0.

    Reference: ``docs/kl/multivariate.md``.
    """
    r = max(factor_p.shape[-1], factor_q.shape[-1])
    wp, wq = _pad_rank(factor_p, r), _pad_rank(factor_q, r)
    dmu = loc_p - loc_q
    dw = wp - wq
    inv_dp = diag_p.reciprocal()
    d_inv = (diag_q - diag_p) / (diag_p * diag_q)  # D_p⁻¹ − D_q⁻¹, from the difference
    joint = ratio_minus_log(diag_p, diag_q).sum(-1)
    joint = joint + (dw.square() / diag_q.unsqueeze(-1)).sum((-2, -1))

    eye = torch.eye(r, dtype=wp.dtype, device=wp.device)
    vp = wp * inv_dp.unsqueeze(-1)  # D_p⁻¹ W_p
    vq = wq / diag_q.unsqueeze(-1)  # D_q⁻¹ W_q
    lcp = _capacitance(capacitance_tril_p, eye, wp, vp)
    lcq = _capacitance(capacitance_tril_q, eye, wq, vq)
    # m = D_p⁻¹ΔW + (D_p⁻¹ − D_q⁻¹)W_q, so that C_p − C_q = ΔWᵀ D_p⁻¹W_p + W_qᵀ m
    m = dw * inv_dp.unsqueeze(-1) + wq * d_inv.unsqueeze(-1)
    dc = dw.mT @ vp + wq.mT @ m
    dc = 0.5 * (dc + dc.mT)  # C_p − C_q
    a = _solve_lower(lcp, -dc)
    t = _solve_lower(lcp, a.mT).mT  # a·L_Cp⁻ᵀ
    f = chol1p(0.5 * (t + t.mT))
    f_diag = f.diagonal(dim1=-2, dim2=-1)
    # F is lower triangular (chol1p writes exact zeros above the diagonal), so the sum of its
    # squares is Σ_{i>j} F_ij² + Σ_i F_ii².
    phi = f.square().sum((-2, -1)) + 2 * x_minus_log1p(f_diag).sum(-1)

    hq = _cholesky_solve(vq.mT, lcq)  # C_q⁻¹ W_qᵀ D_q⁻¹, (..., r, d)
    rhs = m.mT - dc @ hq
    g = lcq.mT @ _cholesky_solve(rhs, lcp)  # L_Cqᵀ ΔH
    posterior = (g.square() * diag_p.unsqueeze(-2)).sum((-2, -1)) + (g @ wp).square().sum((-2, -1))
    cov = (joint - phi - posterior).clamp_min(0)

    proj = _solve_lower(lcq, vq.mT @ dmu.unsqueeze(-1))
    maha = ((dmu.square() / diag_q).sum(-1) - proj.square().sum((-2, -1))).clamp_min(0)
    return 0.5 * (cov + maha)


# Up to this rank the triangular solves on the CPU are written as substitution over the r rows,
# vectorized over the batch: LAPACK's batched calls cost ~1.5–3.5 ms per 25 000 2 × 2 systems,
# the row loop a few elementwise passes. Same algorithm (forward/back substitution), same
# rounding. On a GPU each of those passes is a kernel launch (r² of them per solve) and one
# batched solve is one launch, so there the library's solve is used at every rank.
_SUBSTITUTION_MAX_RANK = 4


def _substitute(lower: torch.Tensor) -> bool:
    return lower.shape[-1] <= _SUBSTITUTION_MAX_RANK and lower.device.type == "cpu"


def _solve_lower(lower: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """X with L X = B for lower-triangular L ``(..., r, r)`` and B ``(..., r, k)`` (broadcast)."""
    r = lower.shape[-1]
    if not _substitute(lower):
        return torch.linalg.solve_triangular(lower, b, upper=False)
    rows: list[torch.Tensor] = []
    for i in range(r):
        acc = b[..., i, :]
        for j in range(i):
            acc = acc - lower[..., i, j].unsqueeze(-1) * rows[j]
        rows.append(acc / lower[..., i, i].unsqueeze(-1))
    return torch.stack(rows, -2)


def _solve_lower_transposed(lower: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """X with Lᵀ X = B for lower-triangular L ``(..., r, r)`` and B ``(..., r, k)``."""
    r = lower.shape[-1]
    if not _substitute(lower):
        return torch.linalg.solve_triangular(lower.mT, b, upper=True)
    rows: list[torch.Tensor | None] = [None] * r
    for i in range(r - 1, -1, -1):
        acc = b[..., i, :]
        for j in range(i + 1, r):
            acc = acc - lower[..., j, i].unsqueeze(-1) * rows[j]
        rows[i] = acc / lower[..., i, i].unsqueeze(-1)
    return torch.stack(rows, -2)


def _cholesky_solve(b: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """(L Lᵀ)⁻¹ B, as ``torch.cholesky_solve(b, lower)``."""
    return _solve_lower_transposed(lower, _solve_lower(lower, b))


def _capacitance(
    given: torch.Tensor | None, eye: torch.Tensor, w: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """chol(I + Wᵀ D⁻¹ W) (v = D⁻¹W, rank padded to r): ``given`` padded with I, or computed."""
    if given is None:
        return torch.linalg.cholesky(eye + w.mT @ v)
    rank = given.shape[-1]
    if rank == eye.shape[-1]:
        return given
    padded = torch.nn.functional.pad(given, (0, eye.shape[-1] - rank, 0, eye.shape[-1] - rank))
    ones = torch.ones_like(eye[0])
    ones[:rank] = 0
    return padded + torch.diag_embed(ones)  # the zero columns of W add an identity block


def _low_rank_parts(d: LowRankMultivariateNormal) -> tuple[torch.Tensor, ...]:
    return d.loc, d._unbroadcasted_cov_factor, d._unbroadcasted_cov_diag


def _dense_tril(d: LowRankMultivariateNormal) -> torch.Tensor:
    w, diag = d._unbroadcasted_cov_factor, d._unbroadcasted_cov_diag
    return torch.linalg.cholesky(w @ w.mT + torch.diag_embed(diag))


@register_kl(LowRankMultivariateNormal, LowRankMultivariateNormal)
def _kl_lowrank_lowrank(p: LowRankMultivariateNormal, q: LowRankMultivariateNormal) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q) for two LowRankMultivariateNormals: :func:`low_rank_kl`.

    Shape: ``broadcast(p.batch_shape, q.batch_shape)``. Reference: ``docs/kl/multivariate.md``.
    """
    kl = low_rank_kl(
        *_low_rank_parts(p),
        *_low_rank_parts(q),
        capacitance_tril_p=p._capacitance_tril,
        capacitance_tril_q=q._capacitance_tril,
    )
    return _expand(kl, p, q)


@register_kl(LowRankMultivariateNormal, MultivariateNormal)
def _kl_lowrank_mvn(p: LowRankMultivariateNormal, q: MultivariateNormal) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q), p low rank, q full: :func:`probgen.kl.mvn.mvn_kl` with p's
    covariance factorized densely (O(d³)). Shape: ``broadcast(p.batch_shape, q.batch_shape)``.
    Reference: ``docs/kl/multivariate.md``."""
    return _expand(mvn_kl(p.loc, _dense_tril(p), *mvn_parts(q)), p, q)


@register_kl(MultivariateNormal, LowRankMultivariateNormal)
def _kl_mvn_lowrank(p: MultivariateNormal, q: LowRankMultivariateNormal) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q), p full, q low rank: :func:`probgen.kl.mvn.mvn_kl` with q's
    covariance factorized densely (O(d³)). Shape: ``broadcast(p.batch_shape, q.batch_shape)``.
    Reference: ``docs/kl/multivariate.md``."""
    return _expand(mvn_kl(*mvn_parts(p), q.loc, _dense_tril(q)), p, q)


@register_kl(Independent, LowRankMultivariateNormal)
def _kl_diagonal_lowrank(p: Independent, q: LowRankMultivariateNormal) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q), p = Independent(Normal, 1), q low rank: :func:`low_rank_kl` with
    W_p = 0, D_p = σ_p² (O(d r²)). Other ``Independent`` bases raise ``NotImplementedError``.
    Shape: ``broadcast(p.batch_shape, q.batch_shape)``. Reference: ``docs/kl/multivariate.md``.
    """
    if diagonal_normal_parts(p) is None:
        return call_fallback((Independent, LowRankMultivariateNormal), p, q)
    return _expand(low_rank_kl(*_diagonal_parts(p), *_low_rank_parts(q)), p, q)


@register_kl(LowRankMultivariateNormal, Independent)
def _kl_lowrank_diagonal(p: LowRankMultivariateNormal, q: Independent) -> torch.Tensor:
    r"""Batchwise KL(p ‖ q), p low rank, q = Independent(Normal, 1): :func:`low_rank_kl` with
    W_q = 0, D_q = σ_q² (O(d r²)). Other ``Independent`` bases raise ``NotImplementedError``.
    Shape: ``broadcast(p.batch_shape, q.batch_shape)``. Reference: ``docs/kl/multivariate.md``.
    """
    if diagonal_normal_parts(q) is None:
        return call_fallback((LowRankMultivariateNormal, Independent), p, q)
    return _expand(low_rank_kl(*_low_rank_parts(p), *_diagonal_parts(q)), p, q)


def _diagonal_parts(d: Independent) -> tuple[torch.Tensor, ...]:
    parts = diagonal_normal_parts(d)
    assert parts is not None
    loc, scale = parts
    return loc, loc.new_zeros(()).expand(*loc.shape, 0), scale.square()
