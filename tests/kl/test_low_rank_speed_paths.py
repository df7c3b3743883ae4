"""The fast paths of the low-rank KL give the same values as the plain ones: chunks of a large
batch, the in-place path without autograd, the float64 evaluation of float32 ratios."""

from __future__ import annotations

import mpmath as mp
import pytest
import torch

import probgen.kl.low_rank as low_rank
from probgen.kl.low_rank import low_rank_kl, ratio_minus_log


def _params(batch: int, d: int, r: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def one():
        loc = torch.randn(batch, d, generator=g, dtype=dtype)
        w = torch.randn(batch, d, r, generator=g, dtype=dtype) / 2
        diag = torch.rand(batch, d, generator=g, dtype=dtype) * 1.5 + 0.5
        return loc, w, diag

    return (*one(), *one())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chunks_of_a_large_batch_match_one_pass(monkeypatch, dtype):
    params = _params(50, 6, 3, dtype)
    whole = low_rank_kl(*params)
    monkeypatch.setattr(low_rank, "_CHUNK_ELEMENTS", 7 * 6 * 3)  # chunks of 7, the last of 1
    chunked = low_rank_kl(*params)
    # Each batch element is computed by the same operations in both: equal up to the
    # summation order the libraries pick for a different batch size.
    torch.testing.assert_close(chunked, whole, rtol=4 * torch.finfo(dtype).eps, atol=0)


def test_in_place_path_matches_the_autograd_path():
    params = _params(20, 5, 2, torch.float64, seed=1)
    plain = low_rank_kl(*params)
    leaves = [x.clone().requires_grad_() for x in params]
    tracked = low_rank_kl(*leaves)
    torch.testing.assert_close(tracked.detach(), plain, rtol=0, atol=0)
    tracked.sum().backward()
    assert all(x.grad is not None and bool(torch.isfinite(x.grad).all()) for x in leaves)


def test_gradient_matches_finite_differences_with_far_ratios():
    # D_p/D_q from 0.25 to 4: both branches of the ratio term are differentiated.
    loc, w, diag, loc_q, w_q, _ = _params(3, 4, 2, torch.float64, seed=2)
    diag_q = diag * torch.tensor([0.25, 0.9, 1.1, 4.0], dtype=torch.float64)
    inputs = [x.clone().requires_grad_() for x in (loc, w, diag, loc_q, w_q, diag_q)]
    assert torch.autograd.gradcheck(lambda *x: low_rank_kl(*x), inputs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ratio_minus_log_near_and_far(dtype):
    b = torch.tensor([1.0, 3.0, 1e-20, 7.0, 2.0], dtype=dtype)
    a = b * torch.tensor([1 + 2**-20, 1 - 2**-18, 1e15, 1e-12, 1.0], dtype=dtype)
    got = ratio_minus_log(a, b).tolist()
    eps = torch.finfo(dtype).eps
    for ai, bi, gi in zip(a.tolist(), b.tolist(), got, strict=True):
        with mp.workdps(50):
            rho = mp.mpf(ai) / mp.mpf(bi)
            ref = float(rho - 1 - mp.log(rho))
        assert abs(gi - ref) <= 4 * eps * ref, (ai, bi, gi, ref)
