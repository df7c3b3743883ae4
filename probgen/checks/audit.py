"""The registry audit: every registered KL pair, checked at a few points in float32 and float64.

Walks :func:`probgen.kl.registry.registered_pairs` (torch's pairs, Pyro's — Pyro is imported
first so that its pairs are there — and probgen's) and runs :func:`~probgen.checks.check_kl`
on each registered function directly, at the points of
:func:`~probgen.checks.cases.cases_for_pair`. With ``torch_only=True`` the audit runs inside
:func:`probgen.kl.torch_kl_only`, i.e. on torch's own implementations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from probgen.checks.cases import cases_for_pair
from probgen.checks.check import check_kl
from probgen.checks.report import KLCheckReport

__all__ = ["AuditRow", "audit_registry", "format_table", "pair_name"]


@dataclass
class AuditRow:
    """The audit of one registered pair in one dtype.

    Attributes:
        pair: ``"P ‖ Q"`` (the registered types).
        implementation: ``module.function`` registered for the pair.
        dtype: ``"float32"`` or ``"float64"``.
        status: ``"pass"``, ``"fail"``, ``"no reference"`` or ``"no cases"`` (the checker has
            no parameter points for a family of the pair).
        references: the reference methods used.
        max_error: the largest ``|value − reference|`` over the points.
        max_ratio: the largest ``error / tolerance`` (≤ 1 passes).
        held, applicable: properties that held, out of those that applied, over the points.
        failures: one line per failed point: the point's label and what failed.
        seconds: wall time of the pair's audit in this dtype.
    """

    pair: str
    implementation: str
    dtype: str
    status: str
    references: list[str] = field(default_factory=list)
    max_error: float = 0.0
    max_ratio: float = 0.0
    held: int = 0
    applicable: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reports: list[KLCheckReport] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        def num(x: float):
            return x if math.isfinite(x) else str(x)

        return {
            "pair": self.pair,
            "implementation": self.implementation,
            "dtype": self.dtype,
            "status": self.status,
            "references": self.references,
            "max_error": num(self.max_error),
            "max_error_over_tolerance": num(self.max_ratio),
            "properties_held": self.held,
            "properties_applicable": self.applicable,
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
            "points": [r.as_dict() for r in self.reports],
        }


def pair_name(pair: tuple[type, type]) -> str:
    return f"{pair[0].__name__} ‖ {pair[1].__name__}"


def _audit_pair(pair, fn, dtype: torch.dtype, **kw) -> AuditRow:
    start = time.perf_counter()
    row = AuditRow(
        pair_name(pair),
        f"{fn.__module__}.{fn.__name__}",
        str(dtype).replace("torch.", ""),
        "pass",
    )
    cases = cases_for_pair(*pair, dtype=dtype)
    if not cases:
        row.status = "no cases"
        row.failures.append("the checker has no parameter points for this pair")
    for label, p, q in cases:
        report = check_kl(p, q, kl_fn=fn, **kw)
        row.reports.append(report)
        if report.reference is not None:
            method = report.reference.method
            if method not in row.references:
                row.references.append(method)
        if math.isfinite(report.error) or report.status == "fail":
            row.max_error = max(row.max_error, report.error)
        if report.tolerance and report.tolerance > 0:
            row.max_ratio = max(row.max_ratio, report.error / report.tolerance)
        for r in report.properties:
            if r.held is not None:
                row.applicable += 1
                row.held += bool(r.held)
        if report.status != "pass":
            row.failures.append(f"{label}: {report.status}: {report.message}")
        if report.status == "fail":
            row.status = "fail"
        elif report.status in ("no reference", "incompatible") and row.status == "pass":
            row.status = report.status
    row.seconds = time.perf_counter() - start
    return row


def audit_registry(
    dtypes: Iterable[torch.dtype] = (torch.float32, torch.float64),
    *,
    torch_only: bool = False,
    pairs: Iterable[str] | None = None,
    **check_kwargs,
) -> list[AuditRow]:
    """Audit every registered pair (or those whose ``"P ‖ Q"`` name contains one of ``pairs``).

    Args:
        dtypes: dtypes to run each pair in.
        torch_only: audit torch's (and Pyro's) implementations with probgen's overrides off.
        pairs: substrings selecting pairs by name, e.g. ``["Gamma ‖ Gamma"]``.
        check_kwargs: passed to :func:`~probgen.checks.check_kl` (``mc_samples``, ``seed``, …).

    Returns:
        One :class:`AuditRow` per pair and dtype, pairs sorted by name.
    """
    import contextlib

    import pyro.distributions  # noqa: F401  (registers Pyro's pairs)

    import probgen.kl  # noqa: F401  (registers probgen's pairs)
    from probgen.kl.registry import registered_pairs, torch_kl_only

    wanted = None if pairs is None else list(pairs)
    rows = []
    with torch_kl_only() if torch_only else contextlib.nullcontext():
        registry = registered_pairs()
        for pair in sorted(registry, key=pair_name):
            if wanted is not None and not any(w in pair_name(pair) for w in wanted):
                continue
            for dtype in dtypes:
                rows.append(_audit_pair(pair, registry[pair], dtype, **check_kwargs))
    return rows


def format_table(rows: list[AuditRow]) -> str:
    """The audit as a Markdown table: pair, dtype, reference, max error, properties, time."""
    lines = [
        "| pair | implementation | dtype | reference | max error | error/tol "
        "| properties held | status | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        impl = r.implementation.rsplit(".", 1)
        impl_short = f"{impl[0].split('.')[0]}:{impl[-1]}"
        lines.append(
            f"| {r.pair} | `{impl_short}` | {r.dtype} | {'; '.join(r.references) or '—'} "
            f"| {r.max_error:.2g} | {r.max_ratio:.2g} | {r.held}/{r.applicable} "
            f"| {r.status.upper() if r.status != 'pass' else 'pass'} | {r.seconds:.2f} s |"
        )
    return "\n".join(lines)
