"""KL-weight schedules: values at known steps, bad arguments."""

from __future__ import annotations

import pytest

from probgen.vae import kl_schedule


def test_constant():
    s = kl_schedule("constant", beta=2.0)
    assert [s(t) for t in (0, 1, 1000)] == [2.0, 2.0, 2.0]


def test_linear_warmup():
    s = kl_schedule("linear", beta=1.0, warmup_steps=4)
    assert [s(t) for t in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    s = kl_schedule("linear", beta=2.0, warmup_steps=2, start=1.0)
    assert [s(t) for t in range(3)] == [1.0, 1.5, 2.0]
    assert kl_schedule("linear", beta=3.0, warmup_steps=0)(0) == 3.0


def test_cyclical():
    s = kl_schedule("cyclical", beta=2.0, cycle_steps=8, ratio=0.5)
    assert [s(t) for t in range(10)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 0.0, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"kind": "sigmoid"}, "unknown schedule"),
        ({"beta": -1.0}, "beta"),
        ({"kind": "linear", "warmup_steps": -3}, "warmup_steps"),
        ({"kind": "cyclical", "cycle_steps": 0}, "cycle_steps"),
        ({"kind": "cyclical", "cycle_steps": 4, "ratio": 0.0}, "ratio"),
        ({"beta": 1.0, "start": 2.0}, "start"),
    ],
)
def test_bad_arguments(kwargs, param):
    with pytest.raises(ValueError, match=param):
        kl_schedule(**kwargs)


def test_negative_step():
    with pytest.raises(ValueError, match="step"):
        kl_schedule("linear", warmup_steps=3)(-1)
