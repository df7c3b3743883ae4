r"""Probabilistic PCA: a latent-variable model whose evidence and posterior are closed form.

Model (Tipping & Bishop 1999, "Probabilistic principal component analysis", JRSS B 61(3)):

.. math::
    z \sim \mathcal N(0, I_L), \qquad x \mid z \sim \mathcal N(Wz + \mu, \sigma^2 I_D),

with W of shape (D, L). Then, with :math:`C = WW^\top + \sigma^2 I_D` and
:math:`M = W^\top W + \sigma^2 I_L`,

.. math::
    p(x) = \mathcal N(x; \mu, C), \qquad
    p(z \mid x) = \mathcal N\big(M^{-1} W^\top (x - \mu),\; \sigma^2 M^{-1}\big),

and for any Gaussian :math:`q = \mathcal N(m, S)` over z the expected log-likelihood is

.. math::
    E_q[\log p(x \mid z)] = -\tfrac D2 \log(2\pi\sigma^2)
        - \frac{\lVert x - \mu - W m\rVert^2 + \operatorname{tr}(W S W^\top)}{2\sigma^2},

so the ELBO E_q[log p(x|z)] − KL(q ‖ N(0, I)) is exact too, and the identity
log p(x) − ELBO(q) = KL(q ‖ p(z|x)) can be checked to rounding error (``docs/elbo.md``).
The exact posterior belongs to :class:`PPCAGuide`'s family (linear mean, shared covariance), so
SVI with that guide can close the gap.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from torch import Tensor
from torch.distributions import constraints

from probgen.kl import kl_divergence

__all__ = ["PPCA", "PPCAGuide"]


class PPCA:
    """Probabilistic PCA with fixed parameters ``W`` (D, L), ``mu`` (D,), ``sigma`` > 0."""

    def __init__(self, W: Tensor, mu: Tensor, sigma: float | Tensor) -> None:
        if W.dim() != 2:
            raise ValueError(f"W must have shape (D, L), got {tuple(W.shape)}")
        if mu.shape != W.shape[:1]:
            raise ValueError(f"mu must have shape ({W.shape[0]},), got {tuple(mu.shape)}")
        sigma = torch.as_tensor(sigma, dtype=W.dtype, device=W.device)
        if sigma.dim() != 0 or not bool(sigma > 0) or not bool(torch.isfinite(sigma)):
            raise ValueError(f"sigma must be a finite scalar > 0, got {sigma!r}")
        self.W, self.mu, self.sigma = W, mu, sigma

    @classmethod
    def random(
        cls,
        data_dim: int,
        latent_dim: int,
        sigma: float = 0.5,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> PPCA:
        """A PPCA with W, μ drawn i.i.d. N(0, 1) from a private generator seeded with ``seed``."""
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(data_dim, latent_dim, generator=g, dtype=dtype)
        mu = torch.randn(data_dim, generator=g, dtype=dtype)
        return cls(W, mu, sigma)

    @property
    def data_dim(self) -> int:
        return self.W.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    def _eye(self, n: int) -> Tensor:
        return torch.eye(n, dtype=self.W.dtype, device=self.W.device)

    def prior(self) -> dist.MultivariateNormal:
        """p(z) = N(0, I_L)."""
        L = self.latent_dim
        return dist.MultivariateNormal(self.W.new_zeros(L), scale_tril=self._eye(L))

    def likelihood(self, z: Tensor) -> dist.Independent:
        """p(x | z) = N(Wz + μ, σ² I_D): batch shape ``z.shape[:-1]``, event ``(D,)``."""
        loc = z @ self.W.T + self.mu
        return dist.Normal(loc, self.sigma.expand(loc.shape)).to_event(1)

    def marginal(self) -> dist.MultivariateNormal:
        """p(x) = N(μ, WWᵀ + σ² I_D)."""
        C = self.W @ self.W.T + self.sigma**2 * self._eye(self.data_dim)
        return dist.MultivariateNormal(self.mu, scale_tril=torch.linalg.cholesky(C))

    def log_marginal(self, x: Tensor) -> Tensor:
        """log p(x) for data ``(N, D)``: shape ``(N,)``."""
        return self.marginal().log_prob(x)

    def posterior(self, x: Tensor) -> dist.MultivariateNormal:
        """p(z | x) = N(M⁻¹Wᵀ(x − μ), σ² M⁻¹), M = WᵀW + σ² I_L: batch ``(N,)``, event ``(L,)``."""
        M = self.W.T @ self.W + self.sigma**2 * self._eye(self.latent_dim)
        chol = torch.linalg.cholesky(M)
        mean = torch.cholesky_solve(((x - self.mu) @ self.W).T, chol).T
        cov = self.sigma**2 * torch.cholesky_inverse(chol)
        return dist.MultivariateNormal(mean, scale_tril=torch.linalg.cholesky(cov))

    def expected_log_likelihood(self, x: Tensor, q: dist.MultivariateNormal) -> Tensor:
        """E_{z∼q}[log p(x | z)] in closed form (module docstring): shape ``(N,)``."""
        resid = x - self.mu - q.loc @ self.W.T
        WL = self.W @ q.scale_tril  # (…, D, L): tr(W S Wᵀ) = ‖W L‖²_F with S = LLᵀ
        trace = WL.square().sum((-2, -1))
        s2 = self.sigma**2
        return -0.5 * self.data_dim * torch.log(2 * math.pi * s2) - (
            resid.square().sum(-1) + trace
        ) / (2 * s2)

    def elbo(self, x: Tensor, q: dist.MultivariateNormal) -> Tensor:
        """ELBO(q) = E_q[log p(x | z)] − KL(q ‖ N(0, I)), exact: shape ``(N,)``."""
        return self.expected_log_likelihood(x, q) - kl_divergence(q, self.prior())

    def sample(self, n: int, *, seed: int = 0) -> Tensor:
        """n data rows ``(n, D)`` from p(x), from a private generator seeded with ``seed``."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g, dtype=self.W.dtype)
        eps = torch.randn(n, self.data_dim, generator=g, dtype=self.W.dtype)
        return z @ self.W.T + self.mu + self.sigma * eps

    def model(self, x: Tensor) -> None:
        """Pyro model: plate ``"data"``, latent ``"z"`` (MultivariateNormal prior), obs ``"x"``."""
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(z), obs=x)


class _PathDerivative(dist.TorchDistribution):
    """Samples (reparameterized) from q, but scores with q's parameters detached: the
    path-derivative ("sticking the landing") gradient of Roeder, Wu & Duvenaud (2017), whose
    variance is zero when q equals the posterior."""

    arg_constraints: dict = {}  # noqa: RUF012
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, q: dist.MultivariateNormal) -> None:
        self.q = q
        self.q_stop = dist.MultivariateNormal(q.loc.detach(), scale_tril=q.scale_tril.detach())
        super().__init__(q.batch_shape, q.event_shape, validate_args=False)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        return self.q.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.q_stop.log_prob(value)


class PPCAGuide(PyroModule):
    """q(z | x) = N(A(x − b), LLᵀ): a linear amortized Gaussian with a shared full covariance,
    the family that contains PPCA's exact posterior (A = M⁻¹Wᵀ, b = μ, LLᵀ = σ²M⁻¹).

    With ``path_derivative=True`` the site's log q is computed with detached parameters
    (Roeder et al. 2017): under ``Trace_ELBO`` the gradient estimate is then exactly 0 at
    q = p(z | x), since log p(x, z) − log q(z) ≡ log p(x) there, so SVI has no noise floor.
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        *,
        path_derivative: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.path_derivative = path_derivative
        self.A = PyroParam(torch.zeros(latent_dim, data_dim, dtype=dtype))
        self.b = PyroParam(torch.zeros(data_dim, dtype=dtype))
        self.scale_tril = PyroParam(
            torch.eye(latent_dim, dtype=dtype), constraint=constraints.lower_cholesky
        )

    def distribution(self, x: Tensor) -> dist.MultivariateNormal:
        """q(z | x) for data ``(N, D)``: batch ``(N,)``, event ``(L,)``."""
        loc = (x - self.b) @ self.A.T
        return dist.MultivariateNormal(loc, scale_tril=self.scale_tril.expand(*loc.shape, -1))

    def forward(self, x: Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            q = self.distribution(x)
            pyro.sample("z", _PathDerivative(q) if self.path_derivative else q)
