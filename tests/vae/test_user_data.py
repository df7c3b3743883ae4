"""Users' data files: formats, flattening, support checks naming value and row, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probgen.vae import get_likelihood
from probgen.vae.user_data import (
    ArrayRows,
    SupportError,
    as_rows,
    check_support,
    load_array,
    split_rows,
    split_user_data,
)


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 17, size=(30, 4, 5)).astype(np.uint8)


def test_npy_is_memory_mapped_and_flattened(tmp_path, images):
    path = tmp_path / "x.npy"
    np.save(path, images)
    rows = load_array(path)
    assert rows.memory_mapped and len(rows) == 30 and rows.data_dim == 20
    assert rows.example_shape == (4, 5)
    index = torch.tensor([7, 2, 29])
    expected = torch.as_tensor(images.reshape(30, 20)[[7, 2, 29]], dtype=torch.float32)
    assert torch.equal(rows.rows(index), expected)
    assert not load_array(path, mmap=False).memory_mapped


def test_npz_by_key_in_spec_or_argument(tmp_path, images):
    path = tmp_path / "d.npz"
    np.savez(path, train=images, labels=np.arange(30))
    for rows in (load_array(f"{path}:train"), load_array(path, key="train")):
        assert rows.data_dim == 20 and rows.source.endswith(":train")
        assert np.array_equal(rows.array, images.reshape(30, 20))
    with pytest.raises(ValueError, match=r"holds 2 arrays \['train', 'labels'\]"):
        load_array(path)
    with pytest.raises(ValueError, match=r"no array 'test'; its arrays are \['train', 'labels'\]"):
        load_array(f"{path}:test")
    with pytest.raises(ValueError, match="data key given twice"):
        load_array(f"{path}:train", key="labels")
    single = tmp_path / "one.npz"
    np.savez(single, x=images)
    assert load_array(single).data_dim == 20


def test_csv_with_and_without_header(tmp_path):
    data = np.arange(12.0).reshape(4, 3) / 7
    plain, header = tmp_path / "a.csv", tmp_path / "b.csv"
    np.savetxt(plain, data, delimiter=",")
    np.savetxt(header, data, delimiter=",", header="p0,p1,p2", comments="")
    for path in (plain, header):
        rows = load_array(path)
        assert rows.array.shape == (4, 3)
        np.testing.assert_allclose(rows.array, data, rtol=1e-15)
    bad = tmp_path / "c.csv"
    bad.write_text("1,2,3\n4,x,6\n")
    with pytest.raises(ValueError, match="every cell must be a number"):
        load_array(bad)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.txt", "1,2", "must end in one of"),
        ("missing.npy", None, "does not exist"),
        ("s.npy", np.array([["a", "b"]]), "must be numbers"),
        ("e.npy", np.zeros((0, 3)), "at least one example"),
    ],
)
def test_bad_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(ValueError, match=message):
        load_array(path)


def test_as_rows_from_tensor_and_array():
    x = torch.arange(24.0).reshape(2, 3, 4)
    rows = as_rows(x)
    assert rows.data_dim == 12 and rows.example_shape == (3, 4)
    assert torch.equal(rows.rows(slice(None)), x.reshape(2, 12))
    assert as_rows(np.arange(5)).data_dim == 1  # five examples of one value


@pytest.mark.parametrize("chunk_rows", [7, 1000])
def test_support_error_names_value_row_and_column(chunk_rows):
    x = np.zeros((50, 6))
    x[23, 4] = 0.5
    x[41, 1] = 3.0
    with pytest.raises(ValueError, match=r"value 0.5 at row 23, column 4 of data is outside the "):
        check_support(get_likelihood("bernoulli"), as_rows(x), chunk_rows=chunk_rows)
    x[23, 4] = 1.0
    with pytest.raises(ValueError, match=r"value 3.0 at row 41, column 1 of data .*bernoulli"):
        check_support(get_likelihood("bernoulli"), as_rows(x), chunk_rows=chunk_rows)
    x[41, 1] = 1.0
    check_support(get_likelihood("bernoulli"), as_rows(x), chunk_rows=chunk_rows)


def test_a_share_of_the_chunks_is_checked_and_read():
    x = np.zeros((10, 2))
    x[1, 0] = 2.0  # chunk 0 (rows 0-2)
    x[7, 1] = 3.0  # chunk 2 (rows 6-8)
    rows = as_rows(x)
    assert [start for start, _ in rows.chunks(3, part=(0, 2))] == [0, 6]
    assert [start for start, _ in rows.chunks(3, part=(1, 2))] == [3, 9]
    bernoulli = get_likelihood("bernoulli")
    with pytest.raises(SupportError, match="row 1, column 0") as info:
        check_support(bernoulli, rows, chunk_rows=3, part=(0, 2))
    assert info.value.row == 1
    check_support(bernoulli, rows, chunk_rows=3, part=(1, 2))  # chunks 1 and 3 are clean


def test_non_finite_values_are_rejected_for_every_likelihood():
    x = np.zeros((10, 3))
    x[6, 2] = np.inf
    with pytest.raises(ValueError, match=r"value inf at row 6, column 2 of data is not finite"):
        check_support(get_likelihood("gaussian"), as_rows(x), chunk_rows=4)


def test_memory_mapped_file_is_checked_and_read_in_chunks(tmp_path):
    # 3000 rows of 64 float32 = 750 KiB, many times the 256-row chunks and 128-row batches:
    # the check and the batches read slices of the map, never the whole array.
    n, d = 3000, 64
    path = tmp_path / "big.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    x[:] = np.random.default_rng(1).integers(0, 2, size=(n, d))
    x[2873, 10] = 2.0
    x.flush()
    del x
    rows = load_array(path)
    assert isinstance(rows.array, np.memmap)
    with pytest.raises(ValueError, match=r"value 2.0 at row 2873, column 10 of .*big.npy"):
        check_support(get_likelihood("bernoulli"), rows, chunk_rows=256)
    check_support(get_likelihood("binomial", total_count=2), rows, chunk_rows=256)
    chunks = list(rows.chunks(256))
    assert [start for start, _ in chunks] == list(range(0, n, 256))
    assert max(c.shape[0] for _, c in chunks) == 256
    split = split_user_data(rows, 0.1)
    batch = split.train_batch(torch.tensor([5, 0, 2000]))
    assert torch.equal(batch, rows.rows(split.train_index[[5, 0, 2000]]))


def test_split_is_fixed_disjoint_and_complete():
    train, test = split_rows(101, 0.1, seed=0)
    assert len(test) == 10 and len(train) == 91
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(101))
    again, _ = split_rows(101, 0.1, seed=0)
    assert np.array_equal(train, again)
    other, _ = split_rows(101, 0.1, seed=1)
    assert not np.array_equal(train, other)
    assert len(split_rows(5, 0.01)[1]) == 1
    with pytest.raises(ValueError, match="test_fraction must be in"):
        split_rows(10, 1.0)
    with pytest.raises(ValueError, match="leaves no row to train on"):
        split_rows(1, 0.5)


def test_array_rows_is_a_view_of_the_data():
    base = np.arange(6.0).reshape(3, 2)
    rows = ArrayRows(base, (2,), "x")
    assert rows.rows(np.array([2, 0])).tolist() == [[4.0, 5.0], [0.0, 1.0]]
