r"""Per-example reparameterization noise: the same samples whatever the number of processes.

A training step draws z = μ(x) + σ(x)·ε for every example of the mini-batch. With the global
torch RNG, ε depends on how the batch is split: one process draws ε for all B rows at once, two
processes draw B/2 rows each from their own RNG streams, so a 2-process step estimates the same
objective with other samples. Here the noise of a step is a function of the step and of the
example's position in the *global* batch only,

.. math::
    \varepsilon_{s} = \text{randn}(B_s, L;\ \text{seed} = h(\text{seed}, s)),
    \qquad \varepsilon_{s, j} \text{ is the noise of example } j \text{ of the global batch of
    step } s,

with ``h`` a seed mixer (:class:`numpy.random.SeedSequence`). Each process takes the rows of its
shard (:meth:`probgen.vae.distributed.Distributed.shard` takes positions r, r + W, …), so
1 and W processes use identical samples and their gradients agree to float rounding. The noise
of step s does not depend on any RNG state, so a resumed run draws the same noise as an
uninterrupted one.

:class:`FixedNoise` is a Pyro handler that uses these ε at the guide's location-scale latent
sites (``Normal``, also under ``to_event``): ``value = loc + scale · ε``, differentiable in loc
and scale, exactly how ``Normal.rsample`` builds its sample. Reference: Kingma & Welling (2014),
"Auto-Encoding Variational Bayes", §2.4 (the reparameterization trick).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pyro.poutine.messenger import Messenger
from torch import Tensor
from torch.distributions import Independent, Normal

__all__ = ["FixedNoise", "step_noise", "step_seed"]


def step_seed(seed: int, step: int) -> int:
    """A 63-bit seed mixed from the run's ``seed`` and the ``step`` (0-based), stable across
    platforms and Python versions."""
    if step < 0:
        raise ValueError(f"step must be ≥ 0, got {step}")
    entropy = [int(seed) % 2**64, int(step)]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def step_noise(
    seed: int, step: int, num_rows: int, latent_dim: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Standard normal noise ``(num_rows, latent_dim)`` of the global batch of step ``step``.

    Row j is the noise of example j of that batch. Drawn on the CPU from a generator seeded by
    :func:`step_seed`, so it is the same on every process and device.
    """
    generator = torch.Generator().manual_seed(step_seed(seed, step))
    return torch.randn(num_rows, latent_dim, generator=generator, dtype=dtype)


class FixedNoise(Messenger):
    """Use the given standard normal noise at latent sample sites: z = loc + scale · ε.

    Args:
        noise: ``{site name: ε}`` with ε of the site's shape (e.g. ``(N, L)`` for the VAE's
            ``"z"`` under the data plate of size N).

    Only sites that are not observed and not already given a value (e.g. by ``replay`` in the
    model) are affected, so wrapping a whole ``model``/``guide`` loss computation in it fixes the
    guide's samples and the model replays them. A site whose distribution is not a (possibly
    ``Independent``) ``Normal`` raises ``NotImplementedError``; a shape mismatch ``ValueError``.
    """

    def __init__(self, noise: dict[str, Tensor]) -> None:
        super().__init__()
        self.noise = dict(noise)

    def _pyro_sample(self, msg: Any) -> None:
        name = msg["name"]
        if msg["is_observed"] or msg["value"] is not None or name not in self.noise:
            return
        base = msg["fn"]
        while isinstance(base, Independent):
            base = base.base_dist
        if not isinstance(base, Normal):
            raise NotImplementedError(
                f"fixed noise needs a Normal (location-scale) latent site; site {name!r} has "
                f"{type(base).__name__}"
            )
        eps = self.noise[name]
        loc, scale = base.loc, base.scale
        shape = torch.broadcast_shapes(loc.shape, scale.shape)
        if tuple(eps.shape) != tuple(shape):
            raise ValueError(
                f"noise for site {name!r} has shape {tuple(eps.shape)}, the site has {tuple(shape)}"
            )
        msg["value"] = loc + scale * eps.to(device=loc.device, dtype=loc.dtype)
