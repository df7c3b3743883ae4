"""What :func:`probgen.vae.train.train` trains and evaluates on: the digits or a user's data.

Both kinds give the training loop the same four things: the number of training rows, the rows of
a mini-batch by position (:meth:`train_batch`, in the order asked), the in-memory evaluation sets
(:meth:`eval_x`) and a support check run before any step (:meth:`check`; with several processes
each reads its share of a user's data set).

- :class:`DigitsSet`: scikit-learn's digits, encoded for the likelihood
  (:func:`probgen.vae.data.load_digits_split`), held on the training device.
- :class:`UserSet`: a user's ``(N, D)`` rows (:mod:`probgen.vae.user_data`), possibly
  memory-mapped: each mini-batch reads its rows from disk and moves them to the device. Train and
  test metrics use at most :data:`EVAL_ROWS` rows of each set (the first ones of its fixed
  index), so the per-epoch evaluation stays bounded for large data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from probgen.vae.data import DigitsSplit, load_digits_split
from probgen.vae.user_data import (
    ArrayRows,
    SupportError,
    UserDataSplit,
    as_rows,
    check_support,
    load_array,
    split_user_data,
)

#: Most rows of each of the train and test sets evaluated per epoch (user data).
EVAL_ROWS = 10_000


@dataclass(frozen=True)
class DigitsSet:
    """The digits split, tensors on the training device."""

    split: DigitsSplit
    device: torch.device

    @property
    def n_train(self) -> int:
        return int(self.split.train_x.shape[0])

    @property
    def data_dim(self) -> int:
        return self.split.data_dim

    @property
    def digits(self) -> DigitsSplit:
        """The split, for the figures (labels, 8×8 images)."""
        return self.split

    def train_batch(self, positions: Tensor) -> Tensor:
        return self.split.train_x[positions.to(self.device)]

    def eval_x(self, split: str) -> Tensor:
        return self.split.train_x if split == "train" else self.split.test_x

    def check(self, vae: Any, distributed: Any = None) -> None:
        vae.check_data(self.split.train_x)
        vae.check_data(self.split.test_x)


@dataclass(frozen=True)
class UserSet:
    """A user's data set split into train and test rows (see :class:`UserDataSplit`)."""

    split: UserDataSplit
    device: torch.device
    digits: None = None

    @property
    def n_train(self) -> int:
        return self.split.n_train

    @property
    def data_dim(self) -> int:
        return self.split.data_dim

    @property
    def source(self) -> str:
        return self.split.rows.source

    def train_batch(self, positions: Tensor) -> Tensor:
        return self.split.train_batch(positions).to(self.device)

    def eval_x(self, split: str) -> Tensor:
        return self.split.eval_rows(split, EVAL_ROWS).to(self.device)

    def check(self, vae: Any, distributed: Any = None) -> None:
        """Support check of every row; with several processes (``distributed``) each reads its
        share of the chunks and all raise the error of the first bad row any of them found."""
        if self.data_dim != vae.data_dim:
            raise ValueError(
                f"{self.source} has {self.data_dim} values per example, the VAE {vae.data_dim}"
            )
        d = distributed
        if d is None or not d.enabled:
            check_support(vae.likelihood, self.split.rows)
            return
        import torch.distributed as dist

        found = None
        try:
            check_support(vae.likelihood, self.split.rows, part=(d.rank, d.world_size))
        except SupportError as exc:
            found = (exc.row, str(exc))
        everyone: list[Any] = [None] * d.world_size
        with d.collective("the support check"):
            dist.all_gather_object(everyone, found)
        errors = [e for e in everyone if e is not None]
        if errors:
            row, message = min(errors)
            raise SupportError(message, row)


def training_set(config: Any, data: Any = None, device: str | torch.device = "cpu") -> Any:
    """The data of a run: ``data`` if given (a path, an array, a tensor or :class:`ArrayRows`),
    else ``config.data`` (a path, with ``config.data_key``), else the digits encoded as
    ``config.encoding``. User data is split with ``config.test_fraction``."""
    device = torch.device(device)
    if data is None and config.data is None:
        split = load_digits_split(config.encoding)
        on_device = DigitsSplit(
            split.train_x.to(device),
            split.train_y,
            split.test_x.to(device),
            split.test_y,
            split.encoding,
        )
        return DigitsSet(on_device, device)
    if data is None:
        rows = load_array(config.data, config.data_key)
    elif isinstance(data, ArrayRows):
        rows = data
    elif isinstance(data, str) or hasattr(data, "__fspath__"):
        rows = load_array(data, config.data_key)
    else:
        rows = as_rows(data)
    return UserSet(split_user_data(rows, config.test_fraction), device)
