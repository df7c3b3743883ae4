"""Hypothesis property tests of probgen's KL pairs, through probgen.checks.

Each pair probgen registers is called directly (as the audit does), on pairs drawn by
:mod:`probgen.strategies` in float32 and float64, and must match the independent reference and
hold every property that applies (the Monte Carlo comparison is left to the audit, which fixes
its seeds). The number of examples follows the Hypothesis profile (``ci`` by default,
``--hypothesis-profile=thorough`` or ``PROBGEN_HYPOTHESIS_PROFILE=thorough`` for more).
torch's and Pyro's own pairs are audited by ``probgen check-kl`` (docs/kl/audit.md) and, for
coverage, by tests/checks/test_registry_coverage.py.
"""

from __future__ import annotations

import pyro.distributions  # noqa: F401  (Pyro's pairs are part of the registry under test)
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import probgen.kl  # noqa: F401
from probgen.checks import check_kl
from probgen.checks.audit import pair_name
from probgen.kl.registry import probgen_pairs
from probgen.strategies import kl_pairs, supported_pair

PROPERTIES = (
    "non-negative",
    "zero on equal",
    "asymmetry",
    "affine invariance",
    "independent additivity",
)
_PAIRS = sorted((p for p in probgen_pairs() if supported_pair(*p)), key=pair_name)
# One example per pair and dtype in the ci profile (there are dozens of pairs), 40 in thorough.
_EXAMPLES = max(1, settings().max_examples // 25)


def test_some_probgen_pairs_are_drawn():
    assert _PAIRS, "no probgen pair has a strategy in probgen.strategies"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("pair", _PAIRS, ids=pair_name)
def test_registered_pair_properties(pair, dtype):
    fn = probgen_pairs()[pair]

    @settings(max_examples=_EXAMPLES, suppress_health_check=list(HealthCheck))
    @given(kl_pairs(*pair, dtype=dtype))
    def check(pq):
        p, q = pq
        report = check_kl(p, q, kl_fn=fn, properties=PROPERTIES)
        assert report.status != "fail", str(report)

    check()
