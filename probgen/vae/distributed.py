r"""Data-parallel VAE training with PyTorch DDP: process group, sharding, the DDP loss module.

``probgen train-vae`` runs unchanged under ``torchrun --nproc_per_node=W`` (or with
``--nproc W``, which starts ``torchrun`` itself): :func:`init_distributed` reads torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and
joins the process group: gloo on the CPU, NCCL on CUDA (one GPU per process,
``cuda:LOCAL_RANK``).

**Equal gradients.** Every step takes a global batch of B examples from the same shuffled order
on all processes; process r trains on positions r, r + W, r + 2W, … of it (the assignment of
``torch.utils.data.DistributedSampler``, without its padding, which would repeat examples and
change the objective). Its loss is the sum over its shard times W,

.. math::
    \mathcal L_r = W \sum_{j \in \text{shard}_r} \ell_j, \qquad
    \frac1W \sum_{r} \nabla \mathcal L_r = \nabla \sum_{j=1}^{B} \ell_j,

and DDP averages the gradients over the W processes (:class:`ELBOLossModule` is the module it
wraps; its forward is the loss, as ``Trace_ELBO()(model, guide)`` is in Pyro), so the update is
the single-process update of the global batch. With the per-example noise of
:mod:`probgen.vae.noise` the samples are the same too, and the gradients agree to float rounding.
(Free bits are the exception: their floor applies to the KL averaged over each process's shard,
as batch norm without synchronization does.)

**Agreement.** After the backward pass one small ``all_reduce`` sums the shards' loss, recon and
KL and a stop flag (Ctrl-C or SIGTERM on any process), so every process sees the same global
terms: all raise together on a non-finite loss, and all stop at the same step on Ctrl-C while
process 0 writes the checkpoint. Collectives and the rendezvous have a timeout
(``timeout_s``), so a process that hangs or never arrives ends the run with an error instead of
a hang; torchrun stops the others when one process dies.

Reference: Li et al. (2020), "PyTorch Distributed: Experiences on Accelerating Data Parallel
Training", VLDB; PyTorch's ``torchrun`` documentation.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Distributed",
    "DistributedError",
    "ELBOLossModule",
    "check_world_size",
    "init_distributed",
    "launch",
    "shutdown",
]

#: Default timeout (seconds) of the rendezvous and of every collective.
DEFAULT_TIMEOUT_S = 600.0
_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK")


class DistributedError(RuntimeError):
    """The process group could not be formed, or a collective failed or timed out."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: ``rank`` of ``world_size`` processes.

    ``world_size == 1`` (:func:`single`) is the plain single-process run: no process group,
    :meth:`shard` is the identity and :meth:`all_reduce_sum` returns its argument.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def enabled(self) -> bool:
        """Whether there is a process group (more than one process)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress and writes files."""
        return self.rank == 0

    def shard(self, batch: Tensor) -> Tensor:
        """This process's rows of a global batch: positions rank, rank + W, …  ``(⌈B/W⌉ or
        ⌊B/W⌋, …)`` from ``(B, …)``."""
        return batch[self.rank :: self.world_size] if self.enabled else batch

    @contextlib.contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Turn a failed or timed-out collective inside the block into :class:`DistributedError`
        naming this rank and ``what`` was being done."""
        try:
            yield
        except RuntimeError as exc:  # gloo/NCCL raise RuntimeError subclasses of several kinds
            if not self.enabled or isinstance(exc, DistributedError):
                raise
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed or timed out (timeout "
                f"{self.timeout_s:g} s); another process probably stopped or died "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def all_reduce_sum(self, values: Tensor) -> Tensor:
        """The elementwise sum of ``values`` over all processes (same shape, same device)."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        with self.collective("the all-reduce of the loss terms"):
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values


def single() -> Distributed:
    """The single-process setting."""
    return Distributed()


def check_world_size(batch_size: int, world_size: int) -> None:
    """``ValueError`` unless the global ``batch_size`` is a multiple of ``world_size``."""
    if world_size < 1:
        raise ValueError(f"world size must be ≥ 1, got {world_size}")
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} (the global batch) is not divisible by the world size "
            f"{world_size}: each process must get the same number of examples; use a "
            f"batch_size that is a multiple of {world_size}"
        )


def _env_int(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set")
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def init_distributed(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> Distributed:
    """Join the process group described by torchrun's environment; returns this process's place.

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) this is a single-process run and nothing is
    initialized. Otherwise: gloo for ``device="cpu"``, NCCL for ``"cuda"`` (this process uses
    ``cuda:LOCAL_RANK``). Raises ``ValueError`` naming missing or bad variables, and
    :class:`DistributedError` when the other processes do not join within ``timeout_s``.
    """
    import torch.distributed as dist

    if not (timeout_s > 0):
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size < 1:
        raise ValueError(f"environment variable WORLD_SIZE must be ≥ 1, got {world_size}")
    if world_size == 1:
        return Distributed(timeout_s=timeout_s)
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world_size} but the rendezvous variables {missing} are not set; "
            f"start the processes with torchrun (or probgen train-vae --nproc N)"
        )
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must be in [0, {world_size}), got {rank}")
    if device == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices are "
                f"visible: start at most that many processes per node"
            )
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except Exception as exc:  # DistNetworkError, DistStoreError, RuntimeError, …
        raise DistributedError(
            f"rank {rank} of {world_size} could not join the process group at {where} within "
            f"{timeout_s:g} s ({type(exc).__name__}: {exc}); are all {world_size} processes "
            f"running and is the rendezvous endpoint reachable?"
        ) from exc
    return Distributed(rank, world_size, local_rank, backend, timeout_s)


def shutdown(d: Distributed) -> None:
    """Leave the process group (no-op for a single process or when none was formed). Release
    any DDP wrapper first (:meth:`probgen.vae.step.Stepper.close`)."""
    import torch.distributed as dist

    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End this process of a multi-process run with exit status ``code``, without the
    interpreter's finalization (standard streams flushed first).

    Call it after :func:`shutdown`. Even after ``destroy_process_group``, gloo's C++ worker
    threads can still own work objects that hold tensors; destroying them during
    finalization, without the GIL, aborts the process ("terminate called without an active
    exception", SIGABRT): measured in about one exit in four under load (torch 2.13, gloo,
    2 processes running several trainings), after all of the run's output was written.
    torchrun would then report a finished run as failed.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


class ELBOLossModule(nn.Module):
    """The training loss as a module, for DDP to wrap: ``forward(x, kl_weight)`` is the loss.

    ``loss_fn(x, kl_weight) -> (loss, *terms)`` computes the negative ELBO of the rows ``x``
    with the parameters of ``vae`` (a registered submodule, so DDP sees and averages its
    gradients) and ``num_terms`` more values (detached terms); ``scale`` multiplies the loss
    (the world size W, see the module docstring). An empty ``x`` gives zeros.
    """

    def __init__(
        self,
        vae: nn.Module,
        loss_fn: Callable[..., tuple[Any, ...]],
        scale: float = 1.0,
        num_terms: int = 2,
    ):
        super().__init__()
        self.vae = vae
        self._loss_fn = loss_fn
        self.num_terms = int(num_terms)
        self.scale = float(scale)

    def forward(self, x: Tensor, kl_weight: float) -> tuple[Tensor, ...]:
        if x.shape[0] == 0:
            # An empty shard (a last global batch smaller than W): no loss, zero gradients,
            # but every parameter takes part so that DDP's gradient reduction completes.
            zero = sum(p.sum() for p in self.vae.parameters()) * 0.0
            return (zero, *(zero.detach() for _ in range(self.num_terms)))
        loss, *rest = self._loss_fn(x, kl_weight)
        return (loss * self.scale, *rest)


def wrap_ddp(module: nn.Module, d: Distributed) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` (parameters broadcast from rank 0)."""
    from torch.nn.parallel import DistributedDataParallel

    if not d.enabled:
        return module
    device_ids = [d.local_rank] if d.backend == "nccl" else None
    return DistributedDataParallel(module, device_ids=device_ids)


class StopSignals:
    """While active, the ``signals`` (SIGINT; with several processes also SIGTERM, which torchrun
    sends to stop its workers) only set ``requested``, and the loop stops at the next step.

    With ``escalate`` (one process), a second signal interrupts at once. Several processes do not
    escalate: a launcher may deliver a signal more than once (torchrun forwards Ctrl-C and then
    sends SIGTERM), and all processes must stop at the same step. Inactive outside the main
    thread.
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGINT,), escalate: bool = True) -> None:
        self.requested = False
        self.escalate = escalate
        self._signals = tuple(signals)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and self.escalate:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The command that runs ``probgen <argv>`` in ``nproc`` processes on this machine."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be an integer ≥ 1, got {nproc!r}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "probgen",
        *argv,
    ]


def launch(nproc: int, argv: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    """Run ``probgen <argv>`` under ``torchrun --standalone --nproc-per-node=nproc``; returns
    its exit status (0 when every process succeeded).

    Ctrl-C reaches torchrun, which forwards it to the workers; this process waits for them to
    write their checkpoint and stop, and then returns 130.
    """
    cmd = torchrun_command(nproc, argv)
    proc = subprocess.Popen(cmd, env=env)
    interrupted = False
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:
            # torchrun got it too and forwards it; the workers stop at the same step and
            # rank 0 writes the checkpoint. Wait for them.
            interrupted = True
    return 130 if interrupted and code else code
