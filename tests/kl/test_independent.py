"""Independent ‖ Independent: additivity, nesting, different counts, Pyro's registrations."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.distributions import Independent, Laplace, Normal
from torch.distributions import MultivariateNormal as MVN

import probgen
from probgen.kl.independent import _kl_independent_independent, flatten_independent
from probgen.kl.registry import lookup, probgen_pairs


def _normals(shape, seed):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(*shape, generator=g, dtype=torch.float64)
    scale = torch.rand(*shape, generator=g, dtype=torch.float64) + 0.5
    return Normal(loc, scale)


def _base_kl(p: Normal, q: Normal) -> torch.Tensor:
    """Textbook KL(N(μp, σp²) ‖ N(μq, σq²)), elementwise."""
    r = p.scale / q.scale
    return 0.5 * (r**2 + ((p.loc - q.loc) / q.scale) ** 2 - 1) - torch.log(r)


def test_kl_is_the_sum_of_base_kls():
    bp, bq = _normals((5, 3, 4), 0), _normals((5, 3, 4), 1)
    kl = probgen.kl_divergence(Independent(bp, 2), Independent(bq, 2))
    assert kl.shape == (5,)
    torch.testing.assert_close(kl, _base_kl(bp, bq).sum((-2, -1)), rtol=1e-12, atol=0)


def test_nested_wrappers_equal_one_wrapper():
    bp, bq = _normals((5, 3, 4), 0), _normals((5, 3, 4), 1)
    nested = Independent(Independent(bp, 1), 1)
    assert flatten_independent(nested) == (bp, 2)
    expected = _base_kl(bp, bq).sum((-2, -1))
    torch.testing.assert_close(probgen.kl_divergence(nested, Independent(bq, 2)), expected)
    torch.testing.assert_close(
        probgen.kl_divergence(Independent(bq, 2), nested), _base_kl(bq, bp).sum((-2, -1))
    )


def test_different_counts_with_the_same_event_shape():
    # Independent(Normal, 2) on (3, 4) against Independent(MultivariateNormal over 4, 1) on 3:
    # both factorize over the 3 rows, so the KL is a sum over rows of diagonal ‖ MVN.
    bp = _normals((2, 3, 4), 0)
    g = torch.Generator().manual_seed(2)
    a = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    tril = torch.linalg.cholesky(a @ a.mT + torch.eye(4))
    q_rows = MVN(torch.randn(2, 3, 4, generator=g, dtype=torch.float64), scale_tril=tril)
    p, q = Independent(bp, 2), Independent(q_rows, 1)
    assert p.event_shape == q.event_shape == (3, 4)
    p_rows = MVN(bp.loc, scale_tril=torch.diag_embed(bp.scale))
    expected = probgen.kl_divergence(p_rows, q_rows).sum(-1)
    torch.testing.assert_close(probgen.kl_divergence(p, q), expected)


def test_different_event_shapes_name_counts_and_shapes():
    p = Independent(_normals((3, 4), 0), 1)
    q = Independent(_normals((4, 3), 1), 1)
    with pytest.raises(ValueError, match=r"reinterpreted_batch_ndims=1, event_shape=\(4,\)"):
        torch.distributions.kl_divergence(p, q)
    p2 = Independent(_normals((3, 4), 0), 2)
    with pytest.raises(ValueError, match=r"ndims=2, event_shape=\(3, 4\).*ndims=1"):
        torch.distributions.kl_divergence(p2, Independent(_normals((3, 4), 1), 1))


def test_factors_without_closed_form_name_all_types():
    p = Independent(Laplace(torch.zeros(3, 2), torch.ones(3, 2)), 2)
    q = Independent(MVN(torch.zeros(3, 2), torch.eye(2)), 1)
    with pytest.raises(NotImplementedError, match=r"Laplace.*MultivariateNormal"):
        torch.distributions.kl_divergence(p, q)


def test_torch_dispatches_to_probgen():
    p, q = Independent(_normals((3,), 0), 1), Independent(_normals((3,), 1), 1)
    assert lookup(p, q) is _kl_independent_independent
    assert probgen_pairs()[(Independent, Independent)] is _kl_independent_independent
    torch.testing.assert_close(
        torch.distributions.kl_divergence(p, q), _base_kl(p.base_dist, q.base_dist).sum(-1)
    )


def test_pyro_independent_of_pyro_normal_ends_in_probgen_normal():
    import pyro.distributions as pdist

    p = pdist.Normal(torch.zeros(4), torch.ones(4)).to_event(1)
    q = pdist.Normal(torch.full((4,), 1e-9), torch.full((4,), 1.0 + 1e-7)).to_event(1)
    assert lookup(p, q) is _kl_independent_independent
    normal_fn = lookup(p.base_dist, q.base_dist)
    assert normal_fn is probgen_pairs()[(Normal, Normal)]
    torch.testing.assert_close(
        torch.distributions.kl_divergence(p, q), normal_fn(p.base_dist, q.base_dist).sum(-1)
    )


def test_importing_pyro_after_probgen_keeps_probgen_pairs():
    code = (
        "import sys, torch, probgen\n"
        "assert 'pyro' not in sys.modules\n"
        "import pyro.distributions as pdist\n"
        "from torch.distributions import Independent, MultivariateNormal\n"
        "from torch.distributions.kl import _KL_REGISTRY\n"
        "from probgen.kl import independent, mvn\n"
        "assert _KL_REGISTRY[Independent, Independent] is independent._kl_independent_independent\n"
        "assert _KL_REGISTRY[Independent, MultivariateNormal] is mvn._kl_diagonal_mvn\n"
        "q = pdist.MultivariateNormal(torch.zeros(3), torch.eye(3))\n"
        "v = torch.tensor([0.5, -1.0, 2.0])\n"
        "kl = torch.distributions.kl_divergence(pdist.Delta(v).to_event(1), q)\n"
        "assert torch.allclose(kl, -q.log_prob(v))\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
