"""The result of a divergence or expected-value computation that says how it was obtained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["Estimate", "EstimateMethod"]

EstimateMethod = Literal["exact", "quadrature", "mc"]


@dataclass(frozen=True)
class Estimate:
    """A value (a JSD, or V(D, G) under known densities) together with how it was computed.

    Attributes:
        value: the value, shape ``broadcast(p.batch_shape, q.batch_shape)``.
        method: ``"exact"`` (closed form or a finite sum), ``"quadrature"`` (scipy's adaptive
            Gauss–Kronrod, 1-D only) or ``"mc"`` (Monte Carlo).
        stderr: standard error of a Monte Carlo estimate (same shape as ``value``), else ``None``.
        abserr: scipy's bound on the absolute quadrature error (a float), else ``None``.
        num_samples: samples per distribution of a Monte Carlo estimate, else ``None``.
    """

    value: torch.Tensor
    method: EstimateMethod
    stderr: torch.Tensor | None = None
    abserr: float | None = None
    num_samples: int | None = None

    def __repr__(self) -> str:
        v = self.value
        shown = f"{v.item():.6g}" if v.numel() == 1 else f"tensor(shape={tuple(v.shape)})"
        if self.method == "mc":
            se = self.stderr
            se_shown = f"{se.item():.3g}" if se is not None and se.numel() == 1 else "…"
            return f"Estimate({shown} ± {se_shown}, method='mc', num_samples={self.num_samples})"
        if self.method == "quadrature":
            return f"Estimate({shown}, method='quadrature', abserr={self.abserr:.2g})"
        return f"Estimate({shown}, method='exact')"
