"""Test-wide settings: seeds, Hypothesis profiles.

Hypothesis profiles: ``ci`` (default, fast) and ``thorough`` (many more examples). Choose with
``pytest --hypothesis-profile=thorough`` or ``PROBGEN_HYPOTHESIS_PROFILE=thorough``.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

import probgen  # noqa: F401  (registers probgen's closed forms)

settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("PROBGEN_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same RNG state, whatever ran before it."""
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002  (seeds code that uses the legacy global RNG)
    torch.manual_seed(0)
    yield
