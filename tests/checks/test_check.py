"""check_kl and the assert_kl_* helpers: pass, fail with a readable message, incompatible."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as td

from probgen.checks import assert_kl_close, assert_kl_properties, check_kl

f64 = torch.float64


def t(*v, dtype=f64):
    return torch.tensor(v[0] if len(v) == 1 else v, dtype=dtype)


def _gumbel_normal_old_torch(p, q):
    """An older torch's KL(Gumbel ‖ Normal), with π·r/12 where (π·r)²/12 is right."""
    r = p.scale / q.scale
    t1 = (q.scale / p.scale).log() - 0.5 * math.log(2 * math.pi)  # noqa: F841
    t2 = math.pi * r / 12  # the bug: should be (math.pi * r) ** 2 / 12
    t3 = ((p.loc + p.scale * 0.5772156649015329 - q.loc) / q.scale) ** 2 / 2
    return (
        -(p.scale.log() + 1 + 0.5772156649015329)
        + 0.5 * math.log(2 * math.pi)
        + (q.scale.log() + t2 + t3)
    )


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_correct_closed_form_passes(dtype):
    p = td.Normal(t(0.0, 1.0, dtype=dtype), t(1.0, 2.0, dtype=dtype))
    q = td.Normal(t(1.0, dtype=dtype), t(2.0, dtype=dtype))
    report = check_kl(p, q)
    assert report.passed, str(report)
    assert report.reference.method.startswith("quad")
    assert report.dtype == str(dtype).removeprefix("torch.")


def test_the_old_gumbel_normal_bug_is_caught():
    p, q = td.Gumbel(t(0.5), t(2.0)), td.Normal(t(0.0), t(1.0))
    report = check_kl(p, q, kl_fn=_gumbel_normal_old_torch)
    assert report.status == "fail"
    with pytest.raises(AssertionError, match=r"Gumbel ‖ Normal.*FAIL"):
        assert_kl_close(p, q, kl_fn=_gumbel_normal_old_torch)


def test_swapped_arguments_fail_asymmetry():
    def swapped(p, q):
        return td.kl_divergence(q, p)

    p, q = td.Gamma(t(2.0), t(1.0)), td.Gamma(t(0.5), t(3.0))
    report = check_kl(p, q, kl_fn=swapped, properties=("asymmetry",))
    assert report.status == "fail"
    assert any(r.name == "asymmetry" and r.held is False for r in report.properties)


def test_negative_value_fails_non_negative():
    p, q = td.Normal(t(0.0), t(1.0)), td.Normal(t(0.0), t(1.0))
    report = check_kl(p, q, kl_fn=lambda a, b: torch.full((), -1e-3, dtype=f64))
    assert [r.held for r in report.properties if r.name == "non-negative"] == [False]


def test_different_event_shapes_are_incompatible_not_a_crash():
    p = td.MultivariateNormal(t(0.0, 0.0), torch.eye(2, dtype=f64))
    q = td.MultivariateNormal(t(0.0, 0.0, 0.0), torch.eye(3, dtype=f64))
    report = check_kl(p, q)
    assert report.status == "incompatible" and "event shapes differ" in report.message
    with pytest.raises(AssertionError, match=r"incompatible|INCOMPATIBLE"):
        assert_kl_properties(p, q)


def test_infinite_kl_is_reported_and_checked():
    p, q = td.Normal(t(0.0, 1.0), t(1.0, 2.0)), td.Uniform(t(0.0), t(1.0))
    report = check_kl(p, q, properties=("non-negative",))
    assert report.reference.value == math.inf and report.value == math.inf
    assert report.passed, str(report)


def test_no_reference_is_never_a_pass():
    p, q = td.Beta(t(0.01), t(0.01)), td.ContinuousBernoulli(t(0.3))
    report = check_kl(p, q, kl_fn=lambda a, b: torch.zeros((), dtype=f64), properties=())
    assert report.status == "no reference" and not report.passed


def test_report_serialises_and_names_properties():
    report = check_kl(td.Poisson(t(3.0)), td.Poisson(t(5.0)))
    data = report.as_dict()
    assert data["reference"]["method"] == "exact sum"
    assert {p["name"] for p in data["properties"]} >= {"non-negative", "analytic vs mc"}


def test_unknown_property_is_a_value_error():
    with pytest.raises(ValueError, match="properties"):
        check_kl(td.Normal(t(0.0), t(1.0)), td.Normal(t(0.0), t(2.0)), properties=("nope",))


def test_importing_the_checks_does_not_import_hypothesis():
    import subprocess
    import sys

    code = "import sys, probgen.checks, probgen.checks.audit; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("p", "match"),
    [
        (td.Normal(t(0.0), t(-1.0), validate_args=False), r"p: parameter 'scale'.*-1\.0"),
        (td.Normal(t(math.nan), t(1.0), validate_args=False), r"p: parameter 'loc'.*NaN"),
    ],
)
def test_invalid_parameters_are_a_value_error_not_a_report(p, match):
    # Neither a crash inside sampling nor a report of NaN "failures".
    with pytest.raises(ValueError, match=match):
        check_kl(p, td.Normal(t(0.0), t(1.0)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rtol": -1.0}, r"rtol must be a finite number ≥ 0, got -1\.0"),
        ({"atol": math.nan}, r"atol must be a finite number ≥ 0, got nan"),
        ({"z": 0.0}, r"z must be a finite number > 0, got 0\.0"),
        ({"mc_samples": 1}, r"mc_samples must be an integer ≥ 2, got 1"),
        ({"reference_mc_samples": 0}, r"reference_mc_samples must be an integer ≥ 2, got 0"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_kl(td.Normal(t(0.0), t(1.0)), td.Normal(t(1.0), t(2.0)), **kwargs)


def test_a_non_distribution_is_a_type_error():
    with pytest.raises(
        TypeError, match=r"q must be a torch\.distributions\.Distribution, got float"
    ):
        check_kl(td.Normal(t(0.0), t(1.0)), 1.0)
