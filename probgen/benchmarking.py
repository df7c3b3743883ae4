"""Small, honest timing tools shared by the scripts in ``benchmarks/``.

* :func:`time_fn` runs warm-up calls, then times repeats with CUDA events on a GPU (after a
  synchronize) or ``time.perf_counter`` on the CPU, and reports the median.
* :func:`measure_side_by_side` interleaves candidates, so that ratios between them see the same
  machine load.
* :func:`environment` and :func:`write_markdown` record machine, versions, date and device next to
  every table; :func:`default_output` keeps a GPU run's pages (``docs/benchmarks/gpu/``) apart
  from the CPU ones.
* :func:`save_figure` draws the plots that go next to a table (matplotlib, Agg, optional).
* :class:`Failures` lets a run go on past one failing case, and reports it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = [
    "Failures",
    "Panel",
    "Timing",
    "copy_bandwidth",
    "default_output",
    "environment",
    "measure_side_by_side",
    "resolve_device",
    "save_figure",
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


def copy_bandwidth(
    device: torch.device | str = "cpu", nbytes: int = 400_000_000, repeats: int = 5
) -> float:
    """Bytes per second of ``dst.copy_(src)`` between two float32 buffers of ``nbytes`` bytes,
    read and write counted: the floor of memory-bound kernels (median of ``repeats``)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = time_fn(lambda: dst.copy_(src), device=device, warmup=2, repeats=repeats)
    return 2 * src.numel() * 4 / t.median


def measure_side_by_side(
    candidates: Mapping[str, Callable[[], object]],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 3,
    rounds: int = 10,
    rotate: bool = False,
) -> dict[str, Timing]:
    """Time several candidates in interleaved rounds (A, B, C, A, B, C, …) and return each one's
    median, so that their ratios are measured under the same load.

    With ``rotate``, round i starts at the i-th candidate (A, B, C, B, C, A, C, A, B, …), so that
    no candidate always runs right after the same other one.
    """
    device = torch.device(device)
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        k = i % len(names) if rotate else 0
        for name in names[k:] + names[:k]:
            times[name].append(_once(candidates[name], device))
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
        props = torch.cuda.get_device_properties(device)
        info["device"] = f"{props.name} ({device}, {props.total_memory / 2**30:.0f} GiB)"
        info["cuda"] = str(torch.version.cuda)
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = "not installed"
    try:
        import pyro

        info["pyro"] = pyro.__version__
    except ImportError:
        pass
    from probgen import __version__

    info["probgen"] = __version__
    return info


def default_output(docs: str | Path, name: str, device: torch.device | str) -> Path:
    """The page a benchmark writes by default: ``<docs>/<name>.md`` for a CPU run,
    ``<docs>/gpu/<name>.md`` for a GPU run (so that it leaves the CPU tables alone)."""
    folder = Path(docs) / "gpu" if torch.device(device).type == "cuda" else Path(docs)
    return folder / f"{name}.md"


def write_markdown(
    path: str | Path,
    title: str,
    sections: Sequence[tuple[str, Sequence[str], Sequence[Sequence[object]]]],
    *,
    env: Mapping[str, str],
    notes: str = "",
    images: Sequence[Path | None] = (),
    failures: Failures | None = None,
) -> Path:
    """Write a Markdown page: title, environment, notes, plots, failures, then one table per
    section.

    Args:
        path: the ``.md`` file (its folder is created).
        title: page title.
        sections: ``(heading, column names, rows)`` per table.
        env: from :func:`environment`.
        notes: free text placed under the environment (what was measured, how).
        images: plots (from :func:`save_figure`) linked under the notes, relative to the page;
            ``None`` entries (plots not drawn) are skipped.
        failures: cases that raised, listed before the tables.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in env.items()]
    lines.append("")
    if notes:
        lines += [notes.strip(), ""]
    for image in images:
        if image is not None:
            rel = Path(os.path.relpath(Path(image).resolve(), path.parent.resolve())).as_posix()
            lines += [f"![{Path(image).stem}]({rel})", ""]
    if failures:
        lines += ["**Failed cases** (left out of the tables):", ""]
        lines += [f"- `{error}`" for error in failures.errors]
        lines.append("")
    for heading, columns, rows in sections:
        if heading:
            lines += [f"## {heading}", ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in columns) + "|")
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Failures:
    """Errors of single cases of a run, so that one failing case does not lose the others.

    ``with failures.guard("Normal, 1e+08"): …`` runs one case; if it raises, the traceback goes
    to stderr, the error is recorded (and listed by :func:`write_markdown`), and the run goes
    on. :meth:`exit_status` is 1 after any failure, for the script's exit status.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.errors)

    @contextlib.contextmanager
    def guard(self, case: str) -> Iterator[None]:
        """Run the block; record and print an exception instead of raising it."""
        try:
            yield
        except Exception as exc:  # any error: recorded, printed, and in the exit status
            first_line = (str(exc).splitlines() or [""])[0]
            self.errors.append(f"{case}: {type(exc).__name__}: {first_line}")
            traceback.print_exc()
            print(f"FAILED {self.errors[-1]}", file=sys.stderr, flush=True)

    def exit_status(self) -> int:
        """0 if every case ran, else 1."""
        return 1 if self.errors else 0


@dataclass(frozen=True)
class Panel:
    """One set of axes of a figure: lines or grouped bars, with dashed reference levels.

    Attributes:
        title, xlabel, ylabel: texts of the axes.
        lines: label → ``(x, y)``, one line with markers each; non-finite y are left out.
        bars: label → one value per entry of ``categories`` (bars grouped by category).
        categories: the x positions of the bars.
        logx, logy: logarithmic axes.
        hlines, vlines: label → level of a dashed horizontal / vertical line (a target, a
            crossover).
    """

    title: str
    xlabel: str
    ylabel: str
    lines: Mapping[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    bars: Mapping[str, Sequence[float]] = field(default_factory=dict)
    categories: Sequence[str] = ()
    logx: bool = False
    logy: bool = False
    hlines: Mapping[str, float] = field(default_factory=dict)
    vlines: Mapping[str, float] = field(default_factory=dict)


def _legend_entries(panel: Panel) -> int:
    return len(panel.lines) + len(panel.bars) + len(panel.hlines) + len(panel.vlines)


def _legend_below(panel: Panel) -> bool:
    """Long legends, and those of bars (which fill the axes), go below the axes."""
    return _legend_entries(panel) > 6 or bool(panel.bars)


def _draw(ax: object, panel: Panel) -> None:
    for i, (label, (xs, ys)) in enumerate(panel.lines.items()):
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
        if panel.logy:
            pairs = [(x, y) for x, y in pairs if y > 0]
        if pairs:  # past the 10 colours of the cycle, dashed lines
            style = "-" if i < 10 else "--"
            ax.plot(*zip(*pairs, strict=True), style, marker="o", markersize=3, label=label)
    width = 0.8 / max(len(panel.bars), 1)
    for i, (label, values) in enumerate(panel.bars.items()):
        xs = [k + (i - (len(panel.bars) - 1) / 2) * width for k in range(len(panel.categories))]
        ax.bar(xs, values, width=width, label=label)
    if panel.bars:
        ax.set_xticks(range(len(panel.categories)), panel.categories, fontsize="small")
    for label, y in panel.hlines.items():
        ax.axhline(y, linestyle="--", color="gray", linewidth=1, label=label)
    for label, x in panel.vlines.items():
        ax.axvline(x, linestyle=":", color="black", linewidth=1, label=label)
    if panel.logx:
        ax.set_xscale("log")
    if panel.logy:
        ax.set_yscale("log")
    ax.set_title(panel.title, fontsize="medium")
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.grid(True, which="major", alpha=0.3)
    entries = len(ax.get_legend_handles_labels()[0])
    if _legend_below(panel):  # where it hides no data
        ax.legend(fontsize="x-small", ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    elif entries:
        ax.legend(fontsize="x-small")


def save_figure(
    path: str | Path, panels: Sequence[Panel], *, title: str = "", columns: int = 2
) -> Path | None:
    """Draw ``panels`` in a grid of ``columns`` into a PNG at ``path`` (100 dpi, Agg).

    matplotlib is optional: without it a note goes to stderr and ``None`` is returned, so a
    benchmark still writes its table. Returns the path written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(f"matplotlib is not installed: {path} not drawn", file=sys.stderr)
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / cols)
    # Room for the legends drawn below their axes, in two columns.
    below = [_legend_entries(p) for p in panels if _legend_below(p)]
    legend = 0.17 * math.ceil(max(below) / 2) if below else 0.0
    fig = Figure(figsize=(5.0 * cols, (3.6 + legend) * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        _draw(ax, panel)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path
