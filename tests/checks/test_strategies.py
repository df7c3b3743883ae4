"""The Hypothesis strategies draw valid distributions and compatible pairs."""

from __future__ import annotations

import pytest
import torch
import torch.distributions as td
from hypothesis import given, settings
from hypothesis import strategies as st

from probgen.checks.densities import same_law_view
from probgen.kl.validation import check_distribution
from probgen.strategies import FAMILY_PARAMS, distributions, kl_pairs

FAMILIES = [
    *FAMILY_PARAMS,
    td.Uniform,
    td.Binomial,
    td.Categorical,
    td.OneHotCategorical,
    td.Dirichlet,
    td.MultivariateNormal,
    td.LowRankMultivariateNormal,
    td.Independent,
]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__)
@settings(max_examples=5)
@given(data=st.data())
def test_drawn_distributions_satisfy_their_constraints(family, data):
    d = data.draw(distributions(family, torch.float32))
    assert isinstance(d, family)
    check_distribution(d)  # raises ValueError on a violated constraint
    assert d.sample().dtype in (torch.float32, torch.int64)


@settings(max_examples=10)
@given(kl_pairs(td.Dirichlet, td.Beta))
def test_dirichlet_beta_pairs_share_an_event_space(pair):
    p, q = pair
    assert same_law_view(p).event_shape == q.event_shape
    torch.broadcast_shapes(p.batch_shape, q.batch_shape)
