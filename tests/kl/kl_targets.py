"""The accuracy targets of the closed forms, shared by the KL tests.

float64: relative error ≤ 1e-10. float32: relative error ≤ 1e-4, or absolute error ≤ 1e-7 where
the KL is below 1e-3. Always ≥ 0 and never NaN.
"""

from __future__ import annotations

import itertools
import math

import torch

RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}
# The parameter range of the accuracy targets of location–scale families, per dtype.
SCALES = {torch.float32: (1e-6, 1.0, 1e6), torch.float64: (1e-30, 1.0, 1e30)}
RELS = (1e-3, 1e-4, 3e-5, 1e-6, 1e-9, 1e-12)  # 1e-4, 3e-5: around the float64 switches


def check_target(value: float, ref: object, dtype: torch.dtype) -> None:
    """Assert that ``value`` meets the target of ``dtype`` against the reference ``ref``."""
    ref = float(ref)
    assert value >= 0 and not math.isnan(value)
    if dtype == torch.float32 and ref < 1e-3:
        assert abs(value - ref) <= 1e-7, (value, ref)
    else:
        assert abs(value - ref) <= RTOL[dtype] * ref, (value, ref)


def near_equal_loc_scale(dtype: torch.dtype) -> list[tuple[float, float, float, float]]:
    """(loc_p, scale_p, loc_q, scale_q): near-equal scale, location or both at the extreme
    scales of ``dtype``, and far-apart scales."""
    cases = []
    for s, rel in itertools.product(SCALES[dtype], RELS):
        cases += [
            (0.3 * s, s, 0.3 * s, s * (1 + rel)),
            (0.3 * s, s, 0.3 * s * (1 + rel), s),
            (-0.7 * s, s * (1 - rel), -0.7 * s * (1 + rel), s),
        ]
    lo, hi = SCALES[dtype][0], SCALES[dtype][-1]
    return [*cases, (0.0, lo, 0.0, hi), (0.0, hi, 0.0, lo), (1.0, 2.0, 3.0, 0.5)]


def normal_kl_mpmath(loc_p: float, scale_p: float, loc_q: float, scale_q: float) -> object:
    """Textbook KL(N_p ‖ N_q) = log(σ_q/σ_p) + (σ_p² + (μ_p − μ_q)²)/(2σ_q²) − ½, 60 digits."""
    import mpmath

    with mpmath.workdps(60):
        lp, sp, lq, sq = (mpmath.mpf(float(x)) for x in (loc_p, scale_p, loc_q, scale_q))
        return mpmath.log(sq / sp) + (sp**2 + (lp - lq) ** 2) / (2 * sq**2) - mpmath.mpf(1) / 2
