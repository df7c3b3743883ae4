"""The compiled CPU kernel of fused_normal_kl: accuracy against mpmath, edge values, threads,
chunk boundaries, and its build (cache, no compiler, failed build, turned off).

Error bound checked here: float64 within 1e-14 relative of the exact KL, float32 within 2e-6.
Each result is a sum of terms with at most ~5 roundings of a few ulp each, whose cancellation
costs at most a factor 6 (the bracket of ``g`` next to r = √2 or √½): 6 · 5 · 2⁻⁵³ ≈ 3e-15 and
6 · 5 · 2⁻²⁴ ≈ 1.8e-6.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import mpmath
import pytest
import torch
from kl_targets import near_equal_loc_scale, normal_kl_mpmath

from probgen import _native
from probgen.kl import _cpu_normal
from probgen.kl import normal as kl_normal

DTYPES = (torch.float32, torch.float64)
BOUND = {torch.float32: 2e-6, torch.float64: 1e-14}

kernels = _cpu_normal.load()
pytestmark = pytest.mark.skipif(kernels is None, reason=f"no compiled kernel: {_native.status()}")


def run(lp, sp, lq, sq) -> torch.Tensor:
    out = torch.empty_like(lp)
    kernels.forward(lp, sp, lq, sq, out)
    return out


def rel_errors(value: torch.Tensor, params) -> list[float]:
    errors = []
    for v, *args in zip(value.tolist(), *(x.tolist() for x in params), strict=True):
        ref = normal_kl_mpmath(*args)
        errors.append(float(abs(mpmath.mpf(v) - ref) / ref) if ref else abs(v))
    return errors


def random_params(n: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    """Scales log-uniform over [1e-3, 1e3] (ratios over 12 decades), locations N(0, 1)·scale."""
    gen = torch.Generator().manual_seed(seed)
    sp, sq = torch.exp((torch.rand(2, n, generator=gen, dtype=torch.float64) - 0.5) * 2 * 6.9)
    lp, lq = torch.randn(2, n, generator=gen, dtype=torch.float64) * sq
    return [x.to(dtype) for x in (lp, sp, lq, sq)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_mpmath_on_random_parameters(dtype):
    params = random_params(2000, dtype, seed=0)
    assert max(rel_errors(run(*params), params)) <= BOUND[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_mpmath_near_equal_and_at_the_reduction_boundaries(dtype):
    """Near-equal laws (KL down to 1e-30 of the scale) and ratios next to √½, √2 and powers of
    two, where the reduction r = 2ᵏ·m changes k."""
    cases = near_equal_loc_scale(dtype)
    eps = torch.finfo(dtype).eps
    for edge in (math.sqrt(0.5), math.sqrt(2.0), 0.5, 2.0, 4.0, 1 / 3):
        for ulps in (-2, -1, 0, 1, 2):
            cases.append((0.1, edge * (1 + ulps * eps), -0.2, 1.0))
    params = [torch.tensor(col, dtype=dtype) for col in zip(*cases, strict=True)]
    value = run(*params)
    assert bool((value >= 0).all())
    assert max(rel_errors(value, params)) <= BOUND[dtype]


@pytest.mark.parametrize(
    "dtype, case",
    [
        (torch.float64, (0.0, 1e-200, 0.0, 1e200)),  # σ_p/σ_q underflows to 0: KL ≈ 920
        (torch.float64, (1e-310, 1.5e-310, -1e-310, 1e-310)),  # subnormal scales: 1/σ_q overflows
        (torch.float64, (0.0, 1e-160, 0.0, 1e160)),  # a subnormal ratio
        (torch.float32, (0.0, 1e-30, 0.0, 1e10)),  # ratio below float's normal range: KL ≈ 91.6
        (torch.float32, (1e-40, 1.2e-39, 0.0, 1e-39)),  # subnormal float32 scales
    ],
)
def test_finite_where_the_ratio_leaves_the_normal_range(dtype, case):
    params = [torch.tensor([v], dtype=dtype) for v in case]
    value = run(*params)
    assert bool(torch.isfinite(value).all())
    assert rel_errors(value, params)[0] <= BOUND[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflow_is_infinite_and_nan_stays_nan(dtype):
    big = torch.finfo(dtype).max
    lp = torch.tensor([0.0, 0.0, float("nan"), 0.0], dtype=dtype)
    sp = torch.tensor([big, 1.0, 1.0, 0.0], dtype=dtype)
    lq = torch.tensor([0.0, big, 0.0, 0.0], dtype=dtype)
    sq = torch.tensor([1e-3, 1e-3, 1.0, 1.0], dtype=dtype)
    value = run(lp, sp, lq, sq)
    # Scale ratio overflows; location gap overflows; NaN in, NaN out; σ_p = 0 (KL = +∞).
    assert value[0] == math.inf and value[1] == math.inf and value[3] == math.inf
    assert math.isnan(value[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_elements_amid_ordinary_ones(dtype):
    """A chunk recomputed for one special element keeps the ordinary elements' values."""
    params = random_params(5000, dtype, seed=1)
    plain = run(*params)
    special = [x.clone() for x in params]
    special[1][3000], special[3][3000] = 1e-30, 1e10  # the float32 underflow case
    value = run(*special)
    mask = torch.ones(5000, dtype=torch.bool)
    mask[3000] = False
    assert torch.equal(value[mask], plain[mask])
    assert math.isfinite(value[3000]) and value[3000] > 60


@pytest.mark.parametrize("n", [0, 1, 15, 17, 2047, 2049, 4096 + 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_lengths_around_vectors_and_chunks(n, dtype):
    params = random_params(n, dtype, seed=n)
    exact = kl_normal.normal_kl(*(x.double() for x in params))
    torch.testing.assert_close(run(*params).double(), exact, rtol=BOUND[dtype], atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_split_the_work_without_changing_it(dtype):
    n = 3 * 65536 + 5  # enough for the kernel to start a second thread
    params = random_params(n, dtype, seed=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(*params)
        torch.set_num_threads(3)
        three = run(*params)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_and_registered_paths_use_the_kernel(dtype, monkeypatch):
    calls = []

    def counting(name):
        def call(*args):
            calls.append(name)
            getattr(kernels, name)(*args)

        return call

    counted = _cpu_normal.CpuKernels(counting("forward"), counting("backward"))
    monkeypatch.setattr(kl_normal, "_cpu_kernels", lambda: counted)
    params = random_params(100, dtype, seed=3)
    kl_normal.fused_normal_kl(*params)
    p = torch.distributions.Normal(params[0], params[1])
    q = torch.distributions.Normal(params[2], params[3])
    torch.distributions.kl_divergence(p, q)
    # With autograd: the Function, also for the expanded parameters of a standard-normal prior.
    posterior = [x.clone().requires_grad_() for x in params[:2]]
    prior = torch.distributions.Normal(torch.zeros((), dtype=dtype), 1.0).expand((100,))
    value = torch.distributions.kl_divergence(torch.distributions.Normal(*posterior), prior)
    assert type(value.grad_fn).__name__ == "_NormalKLBackward"
    value.sum().backward()
    assert calls == ["forward", "forward", "forward", "backward"]
    exact = kl_normal.normal_kl(*(x.double() for x in (*params[:2], prior.loc, prior.scale)))
    torch.testing.assert_close(value.double(), exact, rtol=BOUND[dtype], atol=0)
    # fused_normal_kl with broadcast arguments takes the PyTorch path.
    kl_normal.fused_normal_kl(params[0][:1], params[1], params[2], params[3])
    assert len(calls) == 4


def test_twice_differentiable():
    params = [x.requires_grad_() for x in random_params(6, torch.float64, seed=9)]
    assert type(kl_normal._normal_kl_dispatch(*params).grad_fn).__name__ == "_NormalKLBackward"
    assert torch.autograd.gradcheck(kl_normal._normal_kl_dispatch, params)
    assert torch.autograd.gradgradcheck(kl_normal._normal_kl_dispatch, params)


def assert_gradients_accurate(grads, params, weight, dtype) -> None:
    """Against the float64 formulas of weight · ∂KL/∂(μ_p, σ_p, μ_q, σ_q): each within
    4 · BOUND relative to the size of the terms it sums (its conditioning), per element."""
    lp, sp, lq, sq = (x.double() for x in params)
    w = weight.double()
    t, r = (lp - lq) / sq, sp / sq
    g_loc = w * t / sq
    exact = [g_loc, w * (r * r - 1) / sp, -g_loc, w * (1 - r * r - t * t) / sq]
    scale = [g_loc.abs(), (w * (r * r + 1) / sp).abs()]
    scale += [scale[0], (w * (1 + r * r + t * t) / sq).abs()]
    for g, e, s in zip(grads, exact, scale, strict=True):
        if g is not None:
            assert bool(((g.double() - e).abs() <= 4 * BOUND[dtype] * s).all())


@pytest.mark.parametrize("wanted", [(1, 1, 1, 1), (1, 1, 0, 0), (0, 0, 1, 1), (0, 1, 0, 0)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_the_analytic_gradients(dtype, wanted):
    n = 3 * 65536 + 9  # two threads and a ragged last chunk
    params = random_params(n, dtype, seed=5)
    weight = torch.randn(n, generator=torch.Generator().manual_seed(6), dtype=dtype)
    grads = [
        torch.full_like(x, math.nan) if w else None for x, w in zip(params, wanted, strict=True)
    ]
    kernels.backward(weight, params, grads)
    assert_gradients_accurate(grads, params, weight, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_autograd_through_the_kernel(dtype):
    n = 70_000
    params = [x.requires_grad_() for x in random_params(n, dtype, seed=7)]
    weight = torch.randn(n, generator=torch.Generator().manual_seed(8), dtype=dtype)
    value = kl_normal._normal_kl_dispatch(*params)
    assert type(value.grad_fn).__name__ == "_NormalKLBackward"
    (value * weight).sum().backward()
    assert_gradients_accurate([x.grad for x in params], params, weight, dtype)


def _python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return done.stdout.strip()


_PROBE = (
    "import torch; from probgen import _native; from probgen.kl.normal import fused_normal_kl;"
    "x = torch.tensor([0.5, 2.0]); v = fused_normal_kl(x, x, x, x + 1);"
    "print(repr([round(float(a), 6) for a in v]), '|', list(_native.status().values())[0])"
)
_EXPECTED = repr([round(float(normal_kl_mpmath(a, a, a, a + 1)), 6) for a in (0.5, 2.0)])


def test_build_is_cached_per_source_and_machine(tmp_path):
    env = {"PROBGEN_CACHE_DIR": str(tmp_path)}
    first = _python(_PROBE, env)
    builds = list(tmp_path.glob("_cpu_normal-*.so"))
    assert len(builds) == 1 and first.startswith(f"{_EXPECTED} | loaded {builds[0]} (built by")
    stamp = builds[0].stat().st_mtime_ns
    assert _python(_PROBE, env) == first
    assert builds[0].stat().st_mtime_ns == stamp  # loaded, not built again
    assert list(tmp_path.iterdir()) == builds  # no temporary left behind


@pytest.mark.parametrize(
    "env, why",
    [
        ({"PROBGEN_NATIVE": "0"}, "turned off (PROBGEN_NATIVE=0)"),
        ({"CC": "false"}, "build failed with false"),
    ],
)
def test_without_the_kernel_the_pytorch_path_answers(tmp_path, env, why):
    out = _python(_PROBE, {"PROBGEN_CACHE_DIR": str(tmp_path), **env})
    assert out.startswith(f"{_EXPECTED} | {why}")
    assert not list(tmp_path.glob("*.so"))


def test_a_cache_folder_that_cannot_be_made_falls_back(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = _python(_PROBE, {"PROBGEN_CACHE_DIR": str(blocker / "cache")})
    assert out.startswith(f"{_EXPECTED} | build failed with ")
