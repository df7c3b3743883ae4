"""The timing helpers behind benchmarks/."""

import pytest

from probgen.benchmarking import (
    environment,
    measure_side_by_side,
    resolve_device,
    time_fn,
    write_markdown,
)


def test_time_fn_counts_repeats_and_orders_spread():
    calls = []
    t = time_fn(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7 and t.repeats == 5
    assert 0 <= t.low <= t.median <= t.high


def test_side_by_side_interleaves_candidates():
    order = []
    timings = measure_side_by_side(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=0, rounds=3
    )
    assert order == ["a", "b"] * 3
    assert set(timings) == {"a", "b"}


def test_write_markdown_records_environment(tmp_path):
    env = environment("cpu")
    path = write_markdown(
        tmp_path / "t.md", "Title", [("Section", ["x", "y"], [[1, 2]])], env=env, notes="n"
    )
    text = path.read_text()
    assert "# Title" in text and "| 1 | 2 |" in text and env["torch"] in text


def test_missing_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
