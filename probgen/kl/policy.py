"""When Monte Carlo is cheaper than a closed form: what the benchmarks measured.

``kl_divergence(..., method="auto", prefer="speed")`` consults :func:`mc_is_cheaper`. With the
default ``prefer="accuracy"`` a closed form is always used where one exists.

The only family where a sampled estimate ever beat the closed form on time is the full-covariance
MultivariateNormal: the closed form costs O(B·d³) (two Cholesky factors and a triangular solve
with d right-hand sides), a sample O(B·d²) once q's factor is known. In
``docs/benchmarks/kl_analytic_vs_mc.md`` (batch 256, float32, CPU, one thread), a 2-sample
estimate is cheaper from d = 64 on in every run (d = 64: 4.6 ms vs 10.4 ms; d = 256: 93 ms vs
208 ms, 2026-12-04); at d = 32 the runs disagree (1.87 ms vs 1.82 ms in the last, 1.91 ms vs
2.36 ms in an earlier one), so the switch is at 64. At 128 samples the closed form is cheaper at
every d up to 256; the per-sample cost measured there puts the break-even at 2–3 samples for
d = 64…256. A 2-sample estimate's relative standard
deviation is ~0.5–1, so this is a choice for stochastic optimisation (where an unbiased noisy
estimate is enough), never for evaluation.

On a GPU there is no such crossover: in ``docs/benchmarks/gpu/kl_analytic_vs_mc.md`` (NVIDIA
H200, batch 256, float32) the closed form is cheaper than a 2-sample estimate at every d from 2
to 256 (1.8× at d ≤ 32, 1.05× at d = 256: 1.26 ms vs 1.32 ms), so the policy applies to CPU
tensors only.
"""

from __future__ import annotations

from torch.distributions import Distribution, MultivariateNormal

__all__ = ["MVN_MC_MAX_SAMPLES", "MVN_MC_MIN_DIM", "mc_is_cheaper"]

# Measured crossover (benchmarks/kl_analytic_vs_mc.py): from this dimension on ...
MVN_MC_MIN_DIM = 64
# ... a Monte Carlo estimate with at most this many samples is cheaper than the closed form.
MVN_MC_MAX_SAMPLES = 2


def mc_is_cheaper(p: Distribution, q: Distribution, num_samples: int) -> bool:
    """True where a ``num_samples``-sample estimate of KL(p ‖ q) was measured to be cheaper than
    the closed form: full-covariance MultivariateNormal pairs on the CPU, of dimension
    ≥ MVN_MC_MIN_DIM, with at most MVN_MC_MAX_SAMPLES samples."""
    if not (isinstance(p, MultivariateNormal) and isinstance(q, MultivariateNormal)):
        return False
    if p.loc.device.type != "cpu":
        return False
    return p.event_shape[-1] >= MVN_MC_MIN_DIM and num_samples <= MVN_MC_MAX_SAMPLES
