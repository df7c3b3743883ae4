"""Hypothesis strategies for the GAN tests: 1-D distributions drawn from their constraints, each
with a torch distribution and an independent log density (textbook formulas in plain Python)
for reference quadrature by scipy.integrate.quad."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st
from scipy import integrate
from torch.distributions import Categorical, Distribution, Laplace, MixtureSameFamily, Normal

F64 = torch.float64
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
locs = st.floats(-4.0, 4.0)
scales = st.floats(0.25, 4.0)


@dataclass(frozen=True)
class Spec:
    """A 1-D distribution: ``kind`` in {normal, laplace, mixture}, weights, locs, scales."""

    kind: str
    weights: tuple[float, ...]
    locs: tuple[float, ...]
    scales: tuple[float, ...]

    def torch(self) -> Distribution:
        loc = torch.tensor(self.locs, dtype=F64)
        scale = torch.tensor(self.scales, dtype=F64)
        if self.kind == "normal":
            return Normal(loc[0], scale[0])
        if self.kind == "laplace":
            return Laplace(loc[0], scale[0])
        return MixtureSameFamily(
            Categorical(torch.tensor(self.weights, dtype=F64)), Normal(loc, scale)
        )

    def logpdf(self, x: float) -> float:
        """log density by the textbook formulas (scalar, no torch), for reference quadrature."""
        if self.kind == "laplace":
            m, s = self.locs[0], self.scales[0]
            return -abs(x - m) / s - math.log(2 * s)
        parts = [
            math.log(w) - 0.5 * ((x - m) / s) ** 2 - math.log(s) - _HALF_LOG_2PI
            for w, m, s in zip(self.weights, self.locs, self.scales, strict=True)
        ]
        top = max(parts)
        return top + math.log(sum(math.exp(v - top) for v in parts))

    def span(self) -> tuple[float, float]:
        lo = min(m - 40 * s for m, s in zip(self.locs, self.scales, strict=True))
        hi = max(m + 40 * s for m, s in zip(self.locs, self.scales, strict=True))
        return lo, hi


@st.composite
def specs(draw: st.DrawFn, kinds: tuple[str, ...] = ("normal", "laplace", "mixture")) -> Spec:
    kind = draw(st.sampled_from(kinds))
    k = draw(st.integers(2, 3)) if kind == "mixture" else 1
    raw = draw(st.lists(st.floats(0.1, 1.0), min_size=k, max_size=k))
    weights = tuple(w / sum(raw) for w in raw)
    loc = tuple(draw(st.lists(locs, min_size=k, max_size=k)))
    scale = tuple(draw(st.lists(scales, min_size=k, max_size=k)))
    return Spec(kind, weights, loc, scale)


def reference_integral(f, p: Spec, q: Spec) -> float:
    """∫ f(x) dx by scipy.integrate.quad: breakpoints at the locations, tails separately."""
    lo_p, hi_p = p.span()
    lo_q, hi_q = q.span()
    lo, hi = min(lo_p, lo_q), max(hi_p, hi_q)
    points = sorted(set(p.locs + q.locs))
    opts = dict(epsabs=1e-13, epsrel=1e-12, limit=1000)
    middle = integrate.quad(f, lo, hi, points=points, **opts)[0]
    tails = integrate.quad(f, -np.inf, lo, **opts)[0] + integrate.quad(f, hi, np.inf, **opts)[0]
    return middle + tails


def reference_jsd(p: Spec, q: Spec) -> float:
    """JSD by scipy quadrature of ½ p log(p/m) + ½ q log(q/m), from the reference densities."""

    def f(x: float) -> float:
        lp, lq = p.logpdf(x), q.logpdf(x)
        lm = np.logaddexp(lp, lq) - np.log(2.0)
        term_p = np.exp(lp) * (lp - lm) if lp > -np.inf else 0.0
        term_q = np.exp(lq) * (lq - lm) if lq > -np.inf else 0.0
        return 0.5 * (term_p + term_q)

    return reference_integral(f, p, q)


def reference_value(logit, p: Spec, q: Spec) -> float:
    """V(D, G) = ∫ p log σ(ℓ) + q log σ(−ℓ) by scipy quadrature; ``logit`` maps float → float."""

    def f(x: float) -> float:
        lp, lq, ell = p.logpdf(x), q.logpdf(x), logit(x)
        term_p = -np.exp(lp) * np.logaddexp(0.0, -ell) if lp > -np.inf else 0.0
        term_q = -np.exp(lq) * np.logaddexp(0.0, ell) if lq > -np.inf else 0.0
        return term_p + term_q

    return reference_integral(f, p, q)
