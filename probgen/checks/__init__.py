"""Verification of KL implementations: independent references, properties, a registry audit.

Usable in any test suite without Hypothesis::

    from probgen.checks import assert_kl_properties, check_kl

    report = check_kl(p, q)            # value vs reference, properties, status
    assert_kl_properties(p, q)         # raises AssertionError with the report

See ``docs/verification.md`` for the references and tolerances.
"""

from probgen.checks.check import (
    assert_kl_close,
    assert_kl_properties,
    check_kl,
    default_tolerances,
)
from probgen.checks.properties import PROPERTIES
from probgen.checks.references import reference_kl
from probgen.checks.report import KLCheckReport, PropertyResult, Reference

__all__ = [
    "PROPERTIES",
    "KLCheckReport",
    "PropertyResult",
    "Reference",
    "assert_kl_close",
    "assert_kl_properties",
    "check_kl",
    "default_tolerances",
    "reference_kl",
]
