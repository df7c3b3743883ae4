"""The registry: probgen's registrations land in torch's, and can be turned off."""

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl as torch_kl

from probgen.kl import registry
from probgen.kl.registry import lookup, probgen_pairs, register_kl, torch_kl_only


class _Widget(Normal):
    """A Normal subclass with a pair of its own (only for these tests)."""


@pytest.fixture
def clean_registry():
    saved = (dict(torch_kl._KL_REGISTRY), dict(registry._PROBGEN), dict(registry._REPLACED))
    yield
    torch_kl._KL_REGISTRY.clear()
    torch_kl._KL_REGISTRY.update(saved[0])
    registry._PROBGEN.clear()
    registry._PROBGEN.update(saved[1])
    registry._REPLACED.clear()
    registry._REPLACED.update(saved[2])
    torch_kl._KL_MEMOIZE.clear()


def test_registered_pair_is_used_by_torch(clean_registry):
    @register_kl(_Widget, _Widget)
    def _kl_widget(p, q):
        return torch.full(torch.broadcast_shapes(p.batch_shape, q.batch_shape), 7.0)

    p = _Widget(torch.zeros(2), torch.ones(2))
    assert torch.equal(torch_kl.kl_divergence(p, p), torch.full((2,), 7.0))
    assert lookup(p, p) is _kl_widget
    assert probgen_pairs()[_Widget, _Widget] is _kl_widget

    with torch_kl_only():
        # The pair probgen added is gone: dispatch falls back to torch's Normal pair.
        assert lookup(p, p) is not _kl_widget
        assert torch.equal(torch_kl.kl_divergence(p, p), torch.zeros(2))
    assert lookup(p, p) is _kl_widget


def test_torch_kl_only_restores_replaced_functions(clean_registry):
    original = torch_kl._KL_REGISTRY[Normal, Normal]

    @register_kl(Normal, Normal)
    def _replacement(p, q):
        return torch.zeros(())

    with torch_kl_only():
        assert torch_kl._KL_REGISTRY[Normal, Normal] is registry._REPLACED[Normal, Normal]
    assert torch_kl._KL_REGISTRY[Normal, Normal] is _replacement
    assert original is not _replacement


def test_register_kl_rejects_non_distributions():
    with pytest.raises(TypeError, match="type_q must be a subclass of Distribution"):
        register_kl(Normal, int)
