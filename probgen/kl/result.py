"""The result of a KL computation that says how it was obtained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["KLResult", "Method"]

Method = Literal["analytic", "mc"]


@dataclass(frozen=True, eq=False)
class KLResult:
    """A KL value together with how it was computed.

    Attributes:
        value: KL(p ‖ q), shape ``broadcast(p.batch_shape, q.batch_shape)``.
        method: ``"analytic"`` (a registered closed form) or ``"mc"`` (Monte Carlo).
        stderr: standard error of a Monte Carlo estimate, same shape as ``value``;
            ``None`` for a closed form.
        num_samples: number of samples of a Monte Carlo estimate, else ``None``.
        estimator: ``"naive"`` or ``"k3"`` for Monte Carlo, else the name of the closed form used.
        gradient: ``"reparameterized"`` or ``"score_function"`` for Monte Carlo, else ``"exact"``.
    """

    value: torch.Tensor
    method: Method
    stderr: torch.Tensor | None = None
    num_samples: int | None = None
    estimator: str = ""
    gradient: str = "exact"

    def __repr__(self) -> str:
        v = self.value
        shown = f"{v.item():.6g}" if v.numel() == 1 else f"tensor(shape={tuple(v.shape)})"
        if self.method == "analytic":
            return f"KLResult({shown}, method='analytic', estimator={self.estimator!r})"
        se = self.stderr
        se_shown = f"{se.item():.3g}" if se is not None and se.numel() == 1 else "…"
        return (
            f"KLResult({shown} ± {se_shown}, method='mc', estimator={self.estimator!r}, "
            f"num_samples={self.num_samples}, gradient={self.gradient!r})"
        )
