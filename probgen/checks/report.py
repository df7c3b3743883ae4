"""Report objects of the KL checks: a reference value, a property check, a whole report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["KLCheckReport", "PropertyResult", "Reference", "Status"]

Status = Literal["pass", "fail", "no reference", "incompatible"]


@dataclass(frozen=True)
class Reference:
    """An independent value of KL(p ‖ q) for one batch element.

    Attributes:
        value: the reference value (``math.inf`` for a support mismatch, ``nan`` when none).
        error: a bound on (or, for Monte Carlo, ``z`` standard errors of) the reference's own
            error, absolute.
        method: how it was computed, e.g. ``"quad (scipy.stats)"``, ``"exact sum"``,
            ``"monte carlo"``, ``"mpmath closed form"``, ``"support"``.
        detail: what a reader needs to judge it (truncation point, quadrature estimate, CI, …).
        ok: ``False`` when no reference could be computed (the quadrature did not converge,
            the family is not supported); such a reference never makes a check pass.
    """

    value: float
    error: float
    method: str
    detail: str = ""
    ok: bool = True

    @staticmethod
    def missing(method: str, why: str) -> Reference:
        return Reference(math.nan, math.inf, method, why, ok=False)


@dataclass(frozen=True)
class PropertyResult:
    """One property of the KL checked on one pair.

    ``held`` is ``True``/``False``, or ``None`` when the property does not apply to this pair
    (``detail`` says why); only ``False`` fails a check.
    """

    name: str
    held: bool | None
    error: float = 0.0
    tolerance: float = 0.0
    detail: str = ""

    def __str__(self) -> str:
        mark = {True: "held", False: "FAILED", None: "n/a"}[self.held]
        numbers = (
            f" (error {self.error:.3g} ≤? {self.tolerance:.3g})" if self.held is not None else ""
        )
        return f"{self.name}: {mark}{numbers}{' — ' + self.detail if self.detail else ''}"


@dataclass(frozen=True)
class KLCheckReport:
    """Everything :func:`probgen.checks.check_kl` found about one pair (p, q).

    Attributes:
        pair: ``"P ‖ Q"`` type names.
        dtype: the dtype the KL was computed in.
        value: the largest-error batch element's KL as computed (``nan`` if not computed).
        reference: the reference of that element.
        error: max over the batch of ``|value − reference|`` (``0`` when both are ``+inf``).
        tolerance: the tolerance of that element: ``reference.error + rtol·|ref| + atol``.
        properties: the property checks.
        status: ``"pass"``, ``"fail"``, ``"no reference"`` or ``"incompatible"``.
        message: why, in words, when the status is not ``"pass"``.
    """

    pair: str
    dtype: str
    value: float
    reference: Reference | None
    error: float
    tolerance: float
    properties: tuple[PropertyResult, ...] = field(default_factory=tuple)
    status: Status = "pass"
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def failed_properties(self) -> tuple[PropertyResult, ...]:
        return tuple(r for r in self.properties if r.held is False)

    def __str__(self) -> str:
        lines = [f"KL({self.pair}) [{self.dtype}]: {self.status.upper()}"]
        if self.message:
            lines.append(f"  {self.message}")
        ref = self.reference
        if ref is not None:
            lines.append(
                f"  value {self.value:.10g}, reference {ref.value:.10g} ± {ref.error:.2g} "
                f"({ref.method}{'; ' + ref.detail if ref.detail else ''})"
            )
            lines.append(f"  error {self.error:.3g}, tolerance {self.tolerance:.3g}")
        lines.extend(f"  {r}" for r in self.properties)
        return "\n".join(lines)

    def as_dict(self) -> dict:
        ref = self.reference
        return {
            "pair": self.pair,
            "dtype": self.dtype,
            "status": self.status,
            "message": self.message,
            "value": _json_float(self.value),
            "reference": None
            if ref is None
            else {
                "value": _json_float(ref.value),
                "error": _json_float(ref.error),
                "method": ref.method,
                "detail": ref.detail,
                "ok": ref.ok,
            },
            "error": _json_float(self.error),
            "tolerance": _json_float(self.tolerance),
            "properties": [
                {
                    "name": r.name,
                    "held": r.held,
                    "error": _json_float(r.error),
                    "tolerance": _json_float(r.tolerance),
                    "detail": r.detail,
                }
                for r in self.properties
            ],
        }


def _json_float(x: float) -> float | str:
    """JSON has no inf/nan: write them as strings."""
    return x if math.isfinite(x) else str(x)
