"""Small, honest timing tools shared by the scripts in ``benchmarks/``.

* :func:`time_fn` runs warm-up calls, then times repeats with CUDA events on a GPU (after a
  synchronize) or ``time.perf_counter`` on the CPU, and reports the median.
* :func:`measure_side_by_side` interleaves candidates, so that ratios between them see the same
  machine load.
* :func:`environment` and :func:`write_markdown` record machine, versions, date and device next to
  every table.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "Timing",
    "environment",
    "measure_side_by_side",
    "resolve_device",
    "time_fn",
    "write_markdown",
]


@dataclass(frozen=True)
class Timing:
    """Median and spread of repeated timings, in seconds."""

    median: float
    low: float
    high: float
    repeats: int

    def __str__(self) -> str:
        return _format_seconds(self.median)


def _format_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, or ``"auto"`` (CUDA when available); raises if CUDA is asked for
    and missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def _once(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_fn(
    fn: Callable[[], object],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    min_time: float = 0.0,
) -> Timing:
    """Median time of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    Args:
        fn: the work, with its inputs already built.
        device: where it runs; on CUDA each repeat is bracketed by events and synchronized.
        warmup: untimed calls first (allocator, caches, compilation).
        repeats: timed calls (at least this many).
        min_time: keep repeating until this many seconds were timed in total.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_time:
        times.append(_once(fn, device))
    return Timing(statistics.median(times), min(times), max(times), len(times))


def measure_side_by_side(
    candidates: Mapping[str, Callable[[], object]],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 3,
    rounds: int = 10,
) -> dict[str, Timing]:
    """Time several candidates in interleaved rounds (A, B, C, A, B, C, …) and return each one's
    median, so that their ratios are measured under the same load."""
    device = torch.device(device)
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            times[name].append(_once(fn, device))
    return {name: Timing(statistics.median(t), min(t), max(t), len(t)) for name, t in times.items()}


def environment(device: torch.device | str = "cpu") -> dict[str, str]:
    """Machine, versions, date and device, for the header of a results table."""
    device = torch.device(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "device": str(device),
    }
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    try:
        import pyro

        info["pyro"] = pyro.__version__
    except ImportError:
        pass
    return info


def write_markdown(
    path: str | Path,
    title: str,
    sections: Sequence[tuple[str, Sequence[str], Sequence[Sequence[object]]]],
    *,
    env: Mapping[str, str],
    notes: str = "",
) -> Path:
    """Write a Markdown page: title, environment, notes, then one table per section.

    Args:
        path: the ``.md`` file (its folder is created).
        title: page title.
        sections: ``(heading, column names, rows)`` per table.
        env: from :func:`environment`.
        notes: free text placed under the environment (what was measured, how).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in env.items()]
    lines.append("")
    if notes:
        lines += [notes.strip(), ""]
    for heading, columns, rows in sections:
        if heading:
            lines += [f"## {heading}", ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in columns) + "|")
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        lines.append("")
    path.write_text("\n".join(lines))
    return path
