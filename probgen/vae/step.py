"""One training step of a VAE's Pyro model/guide: the SVI path and the fast path.

Both minimize the same objective, the negative (β-weighted) ELBO of a mini-batch

    loss(x) = −E_q[log p(x|z)] + β·KL(q(z|x) ‖ p(z))            (summed over the batch),

estimated by Pyro's ``Trace_ELBO`` (KL sampled: log q(z|x) − log p(z) at z ~ q) or
``TraceMeanField_ELBO`` (KL in closed form where one is registered), on the same model and guide.

- ``engine="svi"``: ``pyro.infer.SVI`` with ``pyro.optim.Adam``, as in Pyro's tutorials. It keeps
  one ``torch.optim.Adam`` per parameter and runs Pyro's validation checks on every step.
- ``engine="fast"``: the same loss on the same samples, computed by
  :func:`probgen.vae.fast_elbo.elbo_loss` from Pyro traces of the same model and guide (or by
  ``elbo.differentiable_loss`` for guides it does not support), with one fused
  ``torch.optim.Adam`` over ``vae.parameters()`` and Pyro's validation checks off inside the step
  (the data's support is checked once, before training). Adam is elementwise, so one optimizer
  over all parameters makes the same updates as one per parameter.

Each step also returns the reconstruction term and the KL term of the batch, from the traces
already computed (no extra forward pass). ``step(x, β, noise=ε)`` draws z = μ(x) + σ(x)·ε from the
given standard normal rows (:mod:`probgen.vae.noise`) instead of the global RNG. With
``distributed`` (several processes, fast engine) the loss is computed by DDP's wrapper of
:class:`probgen.vae.distributed.ELBOLossModule`, DDP averages the gradients, and one all-reduce
sums the terms and the processes' stop flags (see :mod:`probgen.vae.distributed`).

Reference: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014; Pyro's SVI
tutorial, parts I–III.
"""

from __future__ import annotations

import contextlib
import gc
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro.distributions import Unit
from pyro.infer import ELBO, SVI, Trace_ELBO, TraceMeanField_ELBO
from torch import Tensor

from probgen.vae.distributed import Distributed, ELBOLossModule, wrap_ddp
from probgen.vae.fast_elbo import PlainParameters, UnsupportedGuide, elbo_loss
from probgen.vae.noise import FixedNoise

#: Names of the ELBO estimators: ``trace`` (KL sampled), ``meanfield`` (KL analytic).
ELBOS: dict[str, type[ELBO]] = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO}
#: Names of the training engines.
ENGINES: tuple[str, ...] = ("fast", "svi")


class NonFiniteLossError(FloatingPointError):
    """The loss of a training step is NaN or infinite; the message names the term(s)."""


@dataclass(frozen=True)
class StepTerms:
    """Terms of one step's objective, summed over the batch (nats).

    ``recon`` = −log p(x|z) at the sampled z; ``kl`` = loss − recon, the weighted KL term as
    trained (β·KL, plus any free-bits adjustment); ``loss`` = recon + kl. ``stop``: some process
    asked to stop (Ctrl-C) at this step.
    """

    loss: float
    recon: float
    kl: float
    stop: bool = False


def _recording(cls: type[ELBO]) -> type[ELBO]:
    """A subclass of ``cls`` that keeps the last (model_trace, guide_trace) it evaluated."""

    class Recording(cls):  # type: ignore[misc, valid-type]
        last_traces: tuple[Any, Any] | None = None

        def _get_trace(self, model, guide, args, kwargs):
            traces = super()._get_trace(model, guide, args, kwargs)
            self.last_traces = traces
            return traces

    Recording.__name__ = Recording.__qualname__ = f"Recording{cls.__name__}"
    return Recording


def make_elbo(name: str) -> ELBO:
    """Pyro's ELBO estimator named ``name`` (one of :data:`ELBOS`), recording its traces."""
    if name not in ELBOS:
        raise ValueError(f"elbo must be one of {sorted(ELBOS)}, got {name!r}")
    return _recording(ELBOS[name])()


def observed_log_prob(model_trace: Any) -> Tensor:
    """Sum of log p(x|z) over the observed sites of a model trace (log-probs already computed).

    ``pyro.factor`` sites (e.g. the free-bits correction) are left out: they belong to the KL
    part of the objective.
    """
    total = torch.zeros(())
    for site in model_trace.nodes.values():
        if site["type"] == "sample" and site["is_observed"] and not isinstance(site["fn"], Unit):
            total = total + site["log_prob_sum"].detach()
    return total


def latent_terms_finite(model_trace: Any, guide_trace: Any) -> bool:
    """Whether log p(z) and log q(z|x) are finite at every latent site of the traces."""
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        guide_site = guide_trace.nodes.get(name)
        values = [site["log_prob_sum"]]
        if guide_site is not None and "log_prob_sum" in guide_site:
            values.append(guide_site["log_prob_sum"])
        values.append(guide_site["value"] if guide_site is not None else site["value"])
        if not all(bool(torch.isfinite(v.detach()).all()) for v in values):
            return False
    return True


def describe_nonfinite(loss: float, recon: float, latent_ok: bool) -> str:
    """Which term(s) of a non-finite loss are at fault, in words."""
    bad = []
    if not math.isfinite(recon):
        bad.append(f"the reconstruction term −log p(x|z) is {recon}")
    if not latent_ok:
        bad.append("the KL term is not finite (log q(z|x), log p(z) or z)")
    if not bad:  # finite log-densities but a non-finite total: the KL part (e.g. free bits)
        bad.append(f"the KL term is {loss - recon}")
    return "; ".join(bad)


@contextlib.contextmanager
def _nan_reported_here() -> Iterator[None]:
    """Silence Pyro's "Encountered NaN: loss" warning: :class:`Stepper` raises instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
        yield


class Stepper:
    """Runs training steps of ``vae.model``/``vae.guide`` with one ELBO and one engine.

    ``step(x, kl_weight)`` takes a ``(batch, data_dim)`` tensor and the β of this step, updates
    the parameters and returns :class:`StepTerms`. A non-finite loss raises
    :class:`NonFiniteLossError` naming the term; the fast engine raises before any update.
    """

    def __init__(
        self,
        vae: Any,
        elbo: str = "meanfield",
        engine: str = "fast",
        lr: float = 1e-3,
        *,
        distributed: Distributed | None = None,
    ):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive finite number, got {lr}")
        self.distributed = distributed if distributed is not None else Distributed()
        if self.distributed.enabled and engine != "fast":
            raise ValueError(
                f"engine {engine!r} runs in one process; with {self.distributed.world_size} "
                f"processes use engine 'fast'"
            )
        self.vae = vae
        self.engine = engine
        self.elbo = make_elbo(elbo)
        self._analytic = elbo == "meanfield"
        self._lean = engine == "fast"  # until the guide turns out unsupported
        self._checked = False
        self._plain = PlainParameters(vae)
        if engine == "fast":
            self.optimizer: Any = torch.optim.Adam(vae.parameters(), lr=lr, fused=True)
            if self.distributed.enabled:
                # Wrapped after the optimizer: DDP broadcasts rank 0's parameters in place.
                module = ELBOLossModule(vae, self._local_loss, self.distributed.world_size, 3)
                self._module = wrap_ddp(module, self.distributed)
        else:
            self.optimizer = pyro.optim.Adam({"lr": lr})
            self.svi = SVI(vae.model, vae.guide, self.optimizer, loss=self.elbo)

    def _terms(self, loss: float) -> tuple[float, float]:
        model_trace, guide_trace = self.elbo.last_traces
        recon = -float(observed_log_prob(model_trace))
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                describe_nonfinite(loss, recon, latent_terms_finite(model_trace, guide_trace))
            )
        return recon, loss - recon

    def _local_loss(self, x: Tensor, kl_weight: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(loss, recon, kl, latent_bad)`` of the rows ``x`` (sums; the last three detached;
        ``latent_bad`` is 1.0 where a latent term is not finite, else 0.0)."""
        with pyro.validation_enabled(False):
            if self._lean:
                # The first step finds out whether the guide is supported; if not, it rewinds
                # the RNG so that Pyro's loss below sees the same samples.
                rng = None if self._checked else torch.get_rng_state()
                try:
                    with self._plain:
                        loss_t, recon_t, kl_t = elbo_loss(
                            self.vae.model, self.vae.guide, x, kl_weight, analytic=self._analytic
                        )
                    self._checked = True
                    bad = (~torch.isfinite(kl_t)).to(kl_t.dtype)
                    return loss_t, recon_t, kl_t, bad
                except UnsupportedGuide:
                    if rng is None:
                        raise
                    torch.set_rng_state(rng)
                    self._lean = False
            with _nan_reported_here():
                loss_t = self.elbo.differentiable_loss(self.vae.model, self.vae.guide, x, kl_weight)
        model_trace, guide_trace = self.elbo.last_traces
        recon_t = -observed_log_prob(model_trace).to(loss_t.device)
        kl_t = loss_t.detach() - recon_t
        bad = 0.0 if latent_terms_finite(model_trace, guide_trace) else 1.0
        return loss_t, recon_t, kl_t, torch.full_like(recon_t, bad)

    def step(
        self,
        x: Tensor,
        kl_weight: float = 1.0,
        *,
        noise: Tensor | None = None,
        stop: bool = False,
    ) -> StepTerms:
        """One optimizer step on the batch ``x``; returns the batch's terms (sums, nats).

        Args:
            x: ``(batch, data_dim)``, this process's rows of the global batch.
            kl_weight: β of this step.
            noise: ``(batch, latent_dim)`` standard normal noise of these rows
                (:func:`probgen.vae.noise.step_noise`); ``None`` draws from the global RNG.
            stop: this process wants to stop (Ctrl-C); with several processes the returned
                ``StepTerms.stop`` is true when any process asked, so all stop together.

        With several processes the returned terms are sums over the global batch.
        """
        fixed = FixedNoise({"z": noise}) if noise is not None else contextlib.nullcontext()
        if self.engine == "svi":
            with fixed, _nan_reported_here():
                loss = float(self.svi.step(x, kl_weight))
            recon, kl = self._terms(loss)
            return StepTerms(loss, recon, kl, stop)
        if self.distributed.enabled:
            return self._distributed_step(x, kl_weight, fixed, stop)
        with fixed:
            loss_t, recon_t, kl_t, _ = self._local_loss(x, kl_weight)
        loss = float(loss_t.detach())
        if self._lean:
            recon, kl = float(recon_t), float(kl_t)
            if not math.isfinite(loss):
                raise NonFiniteLossError(describe_nonfinite(loss, recon, math.isfinite(kl)))
        else:
            recon, kl = self._terms(loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss_t.backward()
        self.optimizer.step()
        return StepTerms(loss, recon, kl, stop)

    def _distributed_step(self, x: Tensor, kl_weight: float, fixed: Any, stop: bool) -> StepTerms:
        """DDP: backward (DDP averages the W-scaled gradients), one all-reduce of the terms and
        the stop flags, then the update unless the global loss is not finite."""
        with fixed:
            loss_t, recon_t, kl_t, bad = self._module(x, kl_weight)
        self.optimizer.zero_grad(set_to_none=True)
        with self.distributed.collective("the gradient all-reduce (backward pass)"):
            loss_t.backward()
        world = self.distributed.world_size
        local = torch.stack([loss_t.detach() / world, recon_t, kl_t, bad]).to(torch.float64)
        flags = torch.tensor([float(stop)], dtype=torch.float64, device=local.device)
        sums = self.distributed.all_reduce_sum(torch.cat([local, flags]))
        loss, recon, kl, bad_sum, stops = sums.tolist()
        if not math.isfinite(loss):
            raise NonFiniteLossError(describe_nonfinite(loss, recon, bad_sum == 0))
        self.optimizer.step()
        return StepTerms(loss, recon, kl, stops > 0)

    def close(self) -> None:
        """Release the DDP wrapper. Call it before leaving the process group: a DDP reducer still
        alive when the process exits can abort it ("terminate called without an active
        exception", torch 2.13 with gloo, about one exit in three)."""
        if getattr(self, "_module", None) is not None:
            self._module = None
            gc.collect()  # the wrapper's module holds a bound method of this stepper: a cycle

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state (moments, step counts), for a checkpoint."""
        return self.optimizer.state_dict() if self.engine == "fast" else self.optimizer.get_state()

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`optimizer_state` returned."""
        if self.engine == "fast":
            self.optimizer.load_state_dict(state)
        else:
            self.optimizer.set_state(state)
