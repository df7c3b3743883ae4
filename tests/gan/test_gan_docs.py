"""The worked example in docs/gan.md prints what the code computes."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.distributions import Normal

from probgen.gan import LOG_4, expected_value, jsd, optimal_logit

DOC = Path(__file__).resolve().parents[2] / "docs" / "gan.md"


def test_worked_example_numbers_match_the_docs():
    text = DOC.read_text()
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    p, q = Normal(f64(0.0), f64(1.0)), Normal(f64(1.0), f64(2.0))
    j = jsd(p, q, return_info=True)
    v = expected_value(lambda x: optimal_logit(p, q, x), p, q)
    mc = expected_value(lambda x: optimal_logit(p, q, x), p, q, method="mc", seed=1)
    for shown in (repr(j), repr(v), repr(mc)):
        assert f"# {shown}" in text, shown
    assert f"{-LOG_4 + 2 * float(j.value):.5f}" in text
