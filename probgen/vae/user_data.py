"""Users' own data for VAE training: ``.npy``, ``.npz`` and ``.csv`` files, or arrays.

A data set is N examples of any shape; each example is flattened to one row, giving an ``(N, D)``
matrix (an ``(N, 28, 28)`` array of images becomes ``(N, 784)``; a 1-D array is N rows of one
value). :func:`load_array` reads

- ``.npy``: memory-mapped (``numpy.load(mmap_mode="r")``), so only the rows of each mini-batch are
  read from disk and data larger than RAM trains;
- ``.npz``: the array named by ``key`` (``FILE.npz:KEY`` on the command line), or the only array
  in the file; read into memory (arrays inside a zip cannot be memory-mapped: save large data as
  ``.npy``);
- ``.csv``: numbers separated by commas, one example per line, an optional header line.

:func:`check_support` checks every value against a likelihood's support before training, chunk
by chunk (also on memory-mapped files), and names the first bad value with its row and column.
:func:`split_rows` holds out a fixed random test set. :class:`ArrayRows` reads rows by index as
float32 tensors, in the order asked (the order of the shuffled mini-batch).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SUFFIXES",
    "ArrayRows",
    "SupportError",
    "UserDataSplit",
    "as_rows",
    "check_support",
    "load_array",
    "split_rows",
    "split_user_data",
]

#: File types :func:`load_array` reads.
SUFFIXES = (".npy", ".npz", ".csv")
#: Rows per chunk when scanning a whole data set (support check, evaluation).
CHUNK_ROWS = 65536


@dataclass(frozen=True)
class ArrayRows:
    """An ``(N, D)`` view of a data set (in memory or memory-mapped) and where it came from.

    ``example_shape`` is the shape of one example before flattening (e.g. ``(28, 28)``).
    """

    array: np.ndarray
    example_shape: tuple[int, ...]
    source: str

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def data_dim(self) -> int:
        """D, the number of values per example."""
        return int(self.array.shape[1])

    @property
    def memory_mapped(self) -> bool:
        """Whether rows are read from disk on demand."""
        return isinstance(self.array, np.memmap)

    def rows(
        self, index: Tensor | np.ndarray | slice, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """The rows ``index`` (in that order) as a ``(len(index), D)`` tensor of ``dtype``."""
        if torch.is_tensor(index):
            index = index.cpu().numpy()
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        # A copy: a memory map's slice is a read-only view of the file.
        return torch.from_numpy(np.array(self.array[index], dtype=np_dtype, copy=True))

    def chunks(self, chunk_rows: int | None = None, part: tuple[int, int] = (0, 1)) -> Any:
        """Yield ``(start, rows)`` over the data set, ``rows`` a float32 tensor of at most
        ``chunk_rows`` rows (default :data:`CHUNK_ROWS`). ``part=(r, W)`` yields only chunks
        r, r + W, … (process r's share of a W-process scan)."""
        chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows
        index, count = part
        for start in range(index * chunk_rows, len(self), count * chunk_rows):
            yield start, self.rows(slice(start, start + chunk_rows))


def _flatten(array: np.ndarray, source: str) -> ArrayRows:
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{source}: data must be numbers (bool, integer or float), got dtype {array.dtype}"
        )
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"{source}: data must have at least one example, got shape {array.shape}")
    example_shape = tuple(int(s) for s in array.shape[1:])
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    elif array.ndim > 2:
        if isinstance(array, np.memmap) and not array.flags.c_contiguous:
            raise ValueError(
                f"{source}: a memory-mapped array of shape {array.shape} must be stored in C "
                f"order to be flattened without reading it whole; save it with "
                f"numpy.save(path, numpy.ascontiguousarray(a))"
            )
        array = array.reshape(array.shape[0], -1)
    if array.shape[1] == 0:
        raise ValueError(
            f"{source}: examples must have at least one value, got shape {array.shape}"
        )
    return ArrayRows(array, example_shape, source)


def as_rows(data: Any, source: str = "data") -> ArrayRows:
    """An :class:`ArrayRows` of an in-memory array or tensor of shape ``(N, …)`` (flattened)."""
    if torch.is_tensor(data):
        data = data.detach().cpu().numpy()
    return _flatten(np.asarray(data), source)


def parse_data_spec(
    spec: str | os.PathLike[str], key: str | None = None
) -> tuple[Path, str | None]:
    """Split ``FILE.npz:KEY`` into the path and the key (``key``, if given, must not clash)."""
    text = os.fspath(spec)
    match = re.fullmatch(r"(.+\.npz):([^:/\\]+)", text, flags=re.IGNORECASE)
    if match and not Path(text).exists():
        path_text, spec_key = match.groups()
        if key is not None and key != spec_key:
            raise ValueError(f"data key given twice: {spec_key!r} in {text!r} and {key!r}")
        return Path(path_text), spec_key
    return Path(text), key


def load_array(
    spec: str | os.PathLike[str], key: str | None = None, *, mmap: bool = True
) -> ArrayRows:
    """Load a data file as ``(N, D)`` rows (see the module docstring for the formats).

    Args:
        spec: path of a ``.npy``, ``.npz`` or ``.csv`` file; ``FILE.npz:KEY`` names the array.
        key: the array's name in a ``.npz`` (alternative to ``:KEY``).
        mmap: memory-map ``.npy`` files (default); ``False`` reads them into memory.

    Raises:
        ValueError: a missing file, an unknown suffix, a key that is not in the ``.npz`` (the
            message lists the keys), a non-numeric cell of a ``.csv`` (line and column), a
            non-numeric dtype, or no examples.
    """
    path, key = parse_data_spec(spec, key)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"data file must end in one of {list(SUFFIXES)}, got {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    if key is not None and suffix != ".npz":
        raise ValueError(f"a data key ({key!r}) is only meaningful for .npz files, got {path.name}")
    source = str(path) if key is None else f"{path}:{key}"
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path}: not a numeric .npy array ({exc})") from exc
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None:
                if len(names) != 1:
                    raise ValueError(
                        f"{path} holds {len(names)} arrays {names}: name one with "
                        f"{path.name}:KEY or --data-key KEY"
                    )
                key = names[0]
            elif key not in names:
                raise ValueError(f"{path} has no array {key!r}; its arrays are {names}")
            array = archive[key]
    else:
        array = _load_csv(path)
    return _flatten(array, source)


def _load_csv(path: Path) -> np.ndarray:
    with open(path) as f:
        first = f.readline()
    skip = 0
    try:
        [float(cell) for cell in first.split(",")]
    except ValueError:
        skip = 1  # a header line
    try:
        return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: every cell must be a number ({exc})") from exc


_MESSAGE = re.compile(r"x\[0, (\d+)\] = (.+?) \(row 0\) (.*)", flags=re.DOTALL)


class SupportError(ValueError):
    """A value outside a likelihood's support; ``row`` is its row in the data set."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row


def check_support(
    likelihood: Any,
    data: ArrayRows,
    chunk_rows: int | None = None,
    part: tuple[int, int] = (0, 1),
) -> None:
    """:class:`SupportError` (a ``ValueError``) naming the first value of ``data`` (as float32,
    as trained) that is not finite or outside ``likelihood``'s support, with its row and column
    (0-based).

    Reads ``data`` chunk by chunk (memory-mapped files are not loaded whole); ``part=(r, W)``
    checks only process r's share of the chunks (see :meth:`ArrayRows.chunks`). Data with a
    width other than the decoder's is reported by the model's own shape check.
    """
    for start, chunk in data.chunks(chunk_rows, part):
        bad = ~torch.isfinite(chunk)
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise SupportError(
                f"value {chunk[row, col].item()!r} at row {start + row}, column {col} of "
                f"{data.source} is not finite",
                start + row,
            )
        try:
            likelihood.check_support(chunk)
        except ValueError:
            row = _first_bad_row(likelihood, chunk)
            _raise_for_row(likelihood, chunk[row : row + 1], start + row, data.source)


def _first_bad_row(likelihood: Any, chunk: Tensor) -> int:
    """Bisect to the first row of ``chunk`` that ``likelihood.check_support`` rejects."""
    lo, hi = 0, chunk.shape[0]  # invariant: the first bad row is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            likelihood.check_support(chunk[lo:mid])
            lo = mid
        except ValueError:
            hi = mid
    return lo


def _raise_for_row(likelihood: Any, row: Tensor, index: int, source: str) -> None:
    try:
        likelihood.check_support(row)
    except ValueError as exc:
        match = _MESSAGE.fullmatch(str(exc))
        if match:
            col, value, rest = match.groups()
            raise SupportError(
                f"value {value} at row {index}, column {col} of {source} {rest}", index
            ) from None
        raise SupportError(f"row {index} of {source}: {exc}", index) from None
    raise AssertionError("unreachable: the row was rejected before")  # pragma: no cover


def split_rows(num_rows: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of ``range(num_rows)`` into train and test indices (sorted).

    The test set has ``round(test_fraction · num_rows)`` rows (at least 1 if the fraction is
    > 0), drawn with ``seed`` (not the training seed). ``ValueError`` unless 0 ≤ fraction < 1
    and at least one row is left to train on.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    num_test = max(round(test_fraction * num_rows), 1 if test_fraction > 0 else 0)
    if num_test >= num_rows:
        raise ValueError(
            f"test_fraction {test_fraction} of {num_rows} rows leaves no row to train on"
        )
    perm = np.random.default_rng(seed).permutation(num_rows)
    return np.sort(perm[num_test:]), np.sort(perm[:num_test])


@dataclass(frozen=True)
class UserDataSplit:
    """A user data set split into training rows and a fixed held-out test set.

    ``train_index``, ``test_index``: sorted row numbers of ``rows`` (disjoint, covering all rows).
    """

    rows: ArrayRows
    train_index: np.ndarray
    test_index: np.ndarray

    @property
    def n_train(self) -> int:
        return int(self.train_index.shape[0])

    @property
    def data_dim(self) -> int:
        return self.rows.data_dim

    def train_batch(self, positions: Tensor) -> Tensor:
        """Training examples at ``positions`` (0 … n_train − 1), in that order, ``(B, D)``."""
        return self.rows.rows(self.train_index[positions.cpu().numpy()])

    def eval_rows(self, split: str, max_rows: int) -> Tensor:
        """At most ``max_rows`` rows of ``split`` (``"train"`` or ``"test"``; the first ones of
        its fixed index), ``(≤ max_rows, D)`` in memory, for evaluation."""
        index = {"train": self.train_index, "test": self.test_index}[split]
        return self.rows.rows(index[:max_rows])


def split_user_data(rows: ArrayRows, test_fraction: float, seed: int = 0) -> UserDataSplit:
    """:func:`split_rows` applied to ``rows``."""
    train_index, test_index = split_rows(len(rows), test_fraction, seed)
    return UserDataSplit(rows, train_index, test_index)
