r"""KL-weight schedules: step ↦ β, for ``VAE.model(x, kl_weight=β)`` and ``VAE.guide``.

* ``"constant"``: β(t) = β.
* ``"linear"`` (KL warm-up, Bowman et al. 2016; Sønderby et al. 2016):
  β(t) = start + (β − start) · min(1, t / warmup_steps).
* ``"cyclical"`` (Fu et al. 2019, "Cyclical annealing schedule", NAACL): cycles of
  ``cycle_steps`` steps; within a cycle, with τ = (t mod cycle_steps) / cycle_steps,
  β(t) = start + (β − start) · min(1, τ / ratio): a linear ramp over the first ``ratio`` of the
  cycle, then β.

Steps t are counted from 0 (the first optimizer step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["SCHEDULES", "kl_schedule"]

SCHEDULES: tuple[str, ...] = ("constant", "linear", "cyclical")


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer ≥ 0, got {step!r}")
    return step


def kl_schedule(
    kind: str = "constant",
    beta: float = 1.0,
    warmup_steps: int = 0,
    cycle_steps: int = 0,
    *,
    ratio: float = 0.5,
    start: float = 0.0,
) -> Callable[[int], float]:
    """The schedule ``step ↦ β`` of the given ``kind`` (see the module docstring for formulas).

    Args:
        kind: ``"constant"``, ``"linear"`` or ``"cyclical"``.
        beta: the final (or constant) KL weight, ≥ 0.
        warmup_steps: length of the linear warm-up (``"linear"``; 0 means β from step 0).
        cycle_steps: length of one cycle (``"cyclical"``, ≥ 1).
        ratio: fraction of a cycle spent ramping up, in (0, 1] (``"cyclical"``).
        start: the weight at step 0 of a warm-up or cycle, in [0, β].

    Returns:
        A function of the step t (an integer ≥ 0) returning β(t) as a float.

    Raises:
        ValueError: naming the bad argument.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; valid kinds: {list(SCHEDULES)}")
    if not (isinstance(beta, int | float) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number ≥ 0, got {beta!r}")
    if not (isinstance(start, int | float) and 0 <= start <= beta):
        raise ValueError(f"start must be in [0, beta={beta}], got {start!r}")
    beta, start = float(beta), float(start)

    if kind == "constant":

        def constant(step: int) -> float:
            _check_step(step)
            return beta

        return constant

    if kind == "linear":
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer ≥ 0, got {warmup_steps!r}")

        def linear(step: int) -> float:
            _check_step(step)
            if warmup_steps == 0 or step >= warmup_steps:
                return beta
            return start + (beta - start) * step / warmup_steps

        return linear

    if isinstance(cycle_steps, bool) or not isinstance(cycle_steps, int) or cycle_steps < 1:
        raise ValueError(f"cycle_steps must be an integer ≥ 1 for 'cyclical', got {cycle_steps!r}")
    if not (isinstance(ratio, int | float) and 0 < ratio <= 1):
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    ramp = ratio * cycle_steps

    def cyclical(step: int) -> float:
        _check_step(step)
        pos = step % cycle_steps
        if pos >= ramp:
            return beta
        return start + (beta - start) * pos / ramp

    return cyclical
