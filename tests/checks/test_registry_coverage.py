"""Every registered KL pair has parameter points and a reference in the checker."""

from __future__ import annotations

import pyro.distributions  # noqa: F401  (Pyro's pairs are part of the registry)
import pytest
import torch
import torch.distributions as td

import probgen.kl  # noqa: F401
from probgen.checks.audit import pair_name
from probgen.checks.cases import cases_for_pair
from probgen.checks.check import references_for
from probgen.kl.registry import registered_pairs

_PAIRS = sorted(registered_pairs(), key=pair_name)

# Pairs being added to probgen: the checker must cover them before they land.
UPCOMING = [
    (td.Kumaraswamy, td.Beta),
    (td.Weibull, td.Gamma),
    (td.VonMises, td.VonMises),
    (td.Categorical, td.OneHotCategorical),
    (td.OneHotCategorical, td.Categorical),
    (td.Dirichlet, td.Beta),
    (td.Beta, td.Dirichlet),
    (td.Binomial, td.Binomial),
    (td.Independent, td.MultivariateNormal),
    (td.MultivariateNormal, td.Independent),
    (td.LowRankMultivariateNormal, td.Independent),
    (td.Independent, td.LowRankMultivariateNormal),
]


@pytest.mark.parametrize("pair", sorted(set(_PAIRS) | set(UPCOMING), key=pair_name), ids=pair_name)
def test_pair_has_points_and_a_reference(pair):
    cases = cases_for_pair(*pair, dtype=torch.float64)
    assert cases, f"no parameter points for {pair_name(pair)}: add its families to checks/cases.py"
    label, p, q = cases[0]
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    refs = references_for(p, q, shape, mc_samples=2000, seed=0, z=5.0)
    missing = [r for r in refs if not r.ok]
    assert not missing, f"{pair_name(pair)} at {label}: no reference ({missing[0].detail})"
