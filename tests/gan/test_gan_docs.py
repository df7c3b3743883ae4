"""The worked example in docs/gan.md prints what the code computes."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch.distributions import Normal

from probgen.gan import LOG_4, expected_value, jsd, optimal_logit

DOC = Path(__file__).resolve().parents[2] / "docs" / "gan.md"


def _no_abserr(text: str) -> str:
    return re.sub(r"abserr=[0-9.e+-]+", "abserr=…", text)


def test_worked_example_numbers_match_the_docs():
    # The quadrature error bound depends on the subdivision; the values must match exactly.
    text = _no_abserr(DOC.read_text())
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    p, q = Normal(f64(0.0), f64(1.0)), Normal(f64(1.0), f64(2.0))
    j = jsd(p, q, return_info=True)
    v = expected_value(lambda x: optimal_logit(p, q, x), p, q)
    mc = expected_value(lambda x: optimal_logit(p, q, x), p, q, method="mc", seed=1)
    for shown in (repr(j), repr(v), repr(mc)):
        assert f"# {_no_abserr(shown)}" in text, shown
    assert f"{-LOG_4 + 2 * float(j.value):.5f}" in text
