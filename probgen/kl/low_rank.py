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
with the library's Cholesky factorization of :math:`I + T`, whose diagonal part is recomputed
from T (:func:`low_rank_kl`). Both terms are sums of non-negative pieces that vanish with the
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
from probgen.kl.stable import x_minus_log1p_dense

__all__ = ["chol1p", "low_rank_kl", "ratio_minus_log"]


def ratio_minus_log(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""ρ − 1 − log ρ with ρ = a/b, for positive a, b. Broadcast shape, ≥ 0.

    In float64: g((a − b)/b) where |a − b| ≤ b/2 (the difference is exact there),
    ρ − 1 − (log a − log b) elsewhere. Narrower dtypes are evaluated in float64 as
    ρ − 1 − log ρ: ρ − 1 is exact there, and as a ≠ b differ by at least one float32 ulp
    (|ρ − 1| ≥ 2⁻²⁵), float64's rounding costs at most ~2⁻⁵³·2/|ρ − 1| < 0.2 float32 ulp.
    """
    dtype = torch.result_type(a, b)
    if dtype != torch.float64:
        rho = a.double().div_(b)
        log_rho = torch.log(rho)
        # ρ − 1 before − log ρ: (ρ − log ρ) − 1 would round away the O((ρ − 1)²) result. In
        # place unless a gradient is recorded through ρ (which log saved).
        grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
        rho = rho - 1 if grad else rho.sub_(1)
        return rho.sub_(log_rho).to(dtype).clamp_min_(0)
    x = (a - b) / b
    near = x.abs() <= 0.5
    if bool(near.all()):
        return x_minus_log1p_dense(x)
    far = a / b - 1 - (torch.log(a) - torch.log(b))
    return torch.where(near, x_minus_log1p_dense(x.clamp(-0.5, 0.5)), far.clamp_min(0))


def chol1p(t: torch.Tensor) -> torch.Tensor:
    r"""F = chol(I + T) − I for symmetric T with I + T positive definite, ``(..., n, n)``.

    F keeps its relative accuracy however small T is: below the diagonal it is the library's
    Cholesky factor of I + T (whose entries :math:`F_{ij} = (T_{ij} - \sum_{k<j}F_{ik}F_{jk})
    / (1 + F_{jj})` are formed from T's own entries; rounding 1 + T_jj only perturbs the
    divisor), and on the diagonal :math:`F_{jj} = s_j / (1 + \sqrt{1 + s_j})` with
    :math:`s_j = T_{jj} - \sum_{k<j} F_{jk}^2` (:func:`_chol1p_parts`).
    """
    lower, s = _chol1p_parts(t)
    return lower + torch.diag_embed(s / (1 + torch.sqrt(1 + s)))


def _chol1p_parts(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(F strictly below the diagonal, s) for F = chol(I + T) − I: :func:`chol1p`. Raises
    ``torch.linalg.LinAlgError`` if I + T is not numerically positive definite."""
    eye = torch.eye(t.shape[-1], dtype=t.dtype, device=t.device)
    lower = torch.linalg.cholesky(eye + t).tril(-1)
    s = t.diagonal(dim1=-2, dim2=-1) - lower.square().sum(-1)
    return lower, s


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
    :math:`T = L_{C_p}^{-1}(C_q - C_p)L_{C_p}^{-\top}`, :math:`I + F = \mathrm{chol}(I + T)`,
    :math:`\phi(I + F) = \sum_{i>j}F_{ij}^2 + \sum_j g(s_j)` with
    :math:`s_j = T_{jj} - \sum_{k<j}F_{jk}^2` (only F's strictly lower part is taken from the
    library's factor) and
    :math:`\Delta H = C_p^{-1}W_p^\top D_p^{-1} - C_q^{-1}W_q^\top D_q^{-1}`, all computed from
    the differences of the parameters (see the module docstring). With
    :math:`M = D_p^{-1}\Delta W + (D_p^{-1} - D_q^{-1})W_q`,
    :math:`L_{C_q}^\top\Delta H = A M^\top + B\,W_q^\top D_q^{-1}` where the r × r matrices
    :math:`A = L_{C_q}^\top C_p^{-1}` and :math:`B = -A(C_p - C_q)C_q^{-1}` come from the
    inverses of the r × r factors: every product with a d-long side is one batched matrix
    product. The covariance part and the mean part are each clamped at 0.

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
    d = loc_p.shape[-1]
    r = max(factor_p.shape[-1], factor_q.shape[-1])
    batch = torch.broadcast_shapes(
        loc_p.shape[:-1],
        loc_q.shape[:-1],
        factor_p.shape[:-2],
        factor_q.shape[:-2],
        diag_p.shape[:-1],
        diag_q.shape[:-1],
    )

    # Every operand flattened to one batch dimension (a view unless it was broadcast), so that
    # each product below is a single batched matrix product.
    def flat(x: torch.Tensor, *event: int) -> torch.Tensor:
        return x.expand(*batch, *event).reshape(-1, *event)

    def flat_tril(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else flat(x, *x.shape[-2:])

    parts = (
        flat(_pad_rank(factor_p, r), d, r),
        flat(_pad_rank(factor_q, r), d, r),
        flat(diag_p, d),
        flat(diag_q, d),
        flat(loc_p - loc_q, d),
        flat_tril(capacitance_tril_p),
        flat_tril(capacitance_tril_q),
    )
    # (batch, d, r) temporaries are updated in place when no gradient is recorded through
    # them: on the CPU a fresh buffer of that size costs more in page faults than the
    # arithmetic on it, and two of them are live at a time instead of five.
    inputs = (loc_p, factor_p, diag_p, loc_q, factor_q, diag_q)
    own = not (torch.is_grad_enabled() and any(x.requires_grad for x in inputs))
    # On the CPU a large batch is taken in chunks of about _CHUNK_ELEMENTS factor entries, whose
    # temporaries stay in cache and are reused from one chunk to the next.
    n = parts[0].shape[0]
    step = max(1, _CHUNK_ELEMENTS // max(d * r, 1))
    if parts[0].device.type != "cpu" or n <= step:
        return _low_rank_kl_flat(*parts, own=own).reshape(batch)
    chunks = [
        _low_rank_kl_flat(*(x if x is None else x[i : i + step] for x in parts), own=own)
        for i in range(0, n, step)
    ]
    return torch.cat(chunks).reshape(batch)


# Entries of W per chunk of the batch on the CPU (4 MiB in float32).
_CHUNK_ELEMENTS = 2**20


def _low_rank_kl_flat(
    wp: torch.Tensor,
    wq: torch.Tensor,
    dp: torch.Tensor,
    dq: torch.Tensor,
    dmu: torch.Tensor,
    capacitance_tril_p: torch.Tensor | None,
    capacitance_tril_q: torch.Tensor | None,
    *,
    own: bool,
) -> torch.Tensor:
    """:func:`low_rank_kl` on flattened operands: W ``(n, d, r)`` (rank padded), D and Δμ
    ``(n, d)``, capacitance factors ``(n, r_p, r_p)`` or ``None``; ``own``: the (n, d, r)
    temporaries may be updated in place. Returns ``(n,)``."""
    d, r = wp.shape[-2:]
    inv_dq = dq.reciprocal()
    d_inv = (dq - dp) / (dp * dq)  # D_p⁻¹ − D_q⁻¹, from the difference

    dw = wp - wq
    e = dw / dp.unsqueeze(-1)  # D_p⁻¹ΔW
    dc = e.mT @ wp  # ΔWᵀD_p⁻¹W_p
    dw = dw.square_() if own else dw.square()
    joint = ratio_minus_log(dp, dq).sum(-1) + (inv_dq.unsqueeze(-2) @ dw).sum((-2, -1))
    m = e.addcmul_(wq, d_inv.unsqueeze(-1)) if own else torch.addcmul(e, wq, d_inv.unsqueeze(-1))
    del e
    dc = torch.baddbmm(dc, wq.mT, m)  # C_p − C_q = ΔWᵀD_p⁻¹W_p + W_qᵀM
    dc = 0.5 * (dc + dc.mT)

    eye = torch.eye(r, dtype=wp.dtype, device=wp.device)
    lcp = _capacitance(capacitance_tril_p, eye, wp, dp)
    lcq = _capacitance(capacitance_tril_q, eye, wq, dq)
    lcp_inv, lcq_inv = _solve_lower(torch.stack([lcp, lcq]), eye).unbind()
    t = -(lcp_inv @ dc @ lcp_inv.mT)  # L_Cp⁻¹(C_q − C_p)L_Cp⁻ᵀ
    # φ(I + T) = tr T − log det(I + T) = Σ_{i>j} F_ij² + Σ_j g(s_j), as (1 + F_jj)² = 1 + s_j.
    lower, s_diag = _chol1p_parts(0.5 * (t + t.mT))
    phi = lower.square().sum((-2, -1)) + x_minus_log1p_dense(s_diag).sum(-1)

    # A = L_Cqᵀ C_p⁻¹ and B = −A ΔC C_q⁻¹ are applied one inverse factor at a time. Forming
    # C⁻¹ = L⁻ᵀL⁻¹ first and multiplying by it, the same number of products, was 3–4× less
    # accurate with an ill-conditioned capacitance (r = d = 16, D = 1e-6, float64: 4.5e-8
    # against 1.3e-8 relative in the worst of 30 draws; docs/kl/multivariate.md).
    a = (lcq.mT @ lcp_inv.mT) @ lcp_inv
    b = -(((a @ dc) @ lcq_inv.mT) @ lcq_inv)
    # L_Cqᵀ ΔH = A Mᵀ + B W_qᵀD_q⁻¹, (n, r, d): written over the buffer of ΔW² when that is ours.
    g = torch.bmm(b, wq.mT, out=dw.view(-1, r, d)) if own else b @ wq.mT
    g = g.mul_(inv_dq.unsqueeze(-2)).baddbmm_(a, m.mT)
    del m
    posterior = (g @ wp).square().sum((-2, -1))
    g = g.square_() if own else g.square()
    posterior = posterior + (g @ dp.unsqueeze(-1)).sum((-2, -1))
    cov = (joint - phi - posterior).clamp_min(0)

    z = dmu * inv_dq  # D_q⁻¹Δμ
    proj = lcq_inv @ (wq.mT @ z.unsqueeze(-1))
    maha = ((dmu * z).sum(-1) - proj.square().sum((-2, -1))).clamp_min(0)
    return 0.5 * (cov + maha)


# Up to this rank, and from this many systems on, the triangular solves on the CPU are written
# as substitution over the r rows, vectorized over the batch: LAPACK's batched calls cost
# ~0.13 µs per 4 × 4 system (7 ms for 52 000), the row loop r² elementwise passes (3.7 ms),
# while for a few hundred systems the r² calls of the loop cost more than LAPACK. Same
# algorithm (forward substitution), same rounding. On a GPU each of those passes is a kernel
# launch and one batched solve is one launch, so there the library's solve is always used.
_SUBSTITUTION_MAX_RANK = 4
_SUBSTITUTION_MIN_SYSTEMS = 1024


def _substitute(lower: torch.Tensor) -> bool:
    r = lower.shape[-1]
    return (
        r <= _SUBSTITUTION_MAX_RANK
        and lower.device.type == "cpu"
        and lower.numel() >= _SUBSTITUTION_MIN_SYSTEMS * r * r
    )


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


def _capacitance(
    given: torch.Tensor | None, eye: torch.Tensor, w: torch.Tensor, diag: torch.Tensor
) -> torch.Tensor:
    """chol(I + Wᵀ D⁻¹ W) for W ``(n, d, r)`` (rank padded to r) and D ``(n, d)``: ``given``
    (``(n, r_given, r_given)``) padded with I, or computed."""
    if given is None:
        return torch.linalg.cholesky(eye + w.mT @ (w / diag.unsqueeze(-1)))
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
