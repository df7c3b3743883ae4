"""The timing, page and plot helpers behind benchmarks/, and the scripts on tiny inputs."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from probgen.benchmarking import (
    Failures,
    Panel,
    default_output,
    environment,
    measure_side_by_side,
    resolve_device,
    save_figure,
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


def test_side_by_side_rotates_the_first_candidate():
    order = []
    fns = {k: (lambda k=k: order.append(k)) for k in "abc"}
    measure_side_by_side(fns, warmup=0, rounds=4, rotate=True)
    assert "".join(order) == "abc" + "bca" + "cab" + "abc"


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


# --- Pages, plots and failures; the scripts in benchmarks/ on tiny inputs ---------------------

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _script(name, monkeypatch):
    """Import benchmarks/<name>.py as a module (its folder on sys.path, as when run)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_png(path):
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size < 200_000  # small enough to commit next to the tables


def _assert_header(text):
    assert "- **date**: " in text and "- **device**: cpu" in text
    assert f"- **torch**: {torch.__version__}" in text


def test_default_output_keeps_gpu_pages_apart(tmp_path):
    assert default_output(tmp_path, "x", "cpu") == tmp_path / "x.md"
    assert default_output(tmp_path, "x", torch.device("cuda")) == tmp_path / "gpu" / "x.md"


def test_failures_record_the_case_and_let_the_run_go_on(tmp_path, capsys):
    failures = Failures()
    with failures.guard("ok case"):
        pass
    assert not failures and failures.exit_status() == 0
    reached = []
    with failures.guard("Normal, 1e+08"):
        raise RuntimeError("CUDA out of memory\nmore lines")
    reached.append(True)
    assert reached and failures.exit_status() == 1
    assert failures.errors == ["Normal, 1e+08: RuntimeError: CUDA out of memory"]
    assert "Traceback" in capsys.readouterr().err
    page = write_markdown(
        tmp_path / "p.md", "T", [("", ["a"], [[1]])], env={"date": "d"}, failures=failures
    )
    assert "- `Normal, 1e+08: RuntimeError: CUDA out of memory`" in page.read_text()


def test_save_figure_lines_bars_and_link(tmp_path):
    pytest.importorskip("matplotlib")
    panels = [
        Panel(
            "l",
            "x",
            "y",
            {"a": ([1, 10, 100], [1.0, float("nan"), 0.0])},
            logx=True,
            logy=True,
            hlines={"target": 0.5},
            vlines={"cross": 10},
        ),
        Panel("b", "", "y", bars={"a": [1.0, 2.0], "b": [3.0, 4.0]}, categories=["s", "t"]),
    ]
    image = save_figure(tmp_path / "sub" / "f.png", panels, title="t")
    _assert_png(image)
    page = write_markdown(
        tmp_path / "sub" / "f.md", "T", [], env={"date": "d"}, images=[image, None]
    )
    assert "![f](f.png)" in page.read_text()


def test_save_figure_without_matplotlib_skips_the_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert save_figure(tmp_path / "f.png", [Panel("t", "x", "y")]) is None
    assert not (tmp_path / "f.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_run_all_passes_the_output_folder(tmp_path, monkeypatch):
    run_all = _script("run_all", monkeypatch)
    cmd = run_all.command("vae_step", "cuda", True, tmp_path)
    assert cmd[1:] == [
        str(BENCHMARKS / "vae_step.py"),
        "--device",
        "cuda",
        "--quick",
        "--out",
        str(tmp_path / "vae_step.md"),
    ]
    assert "--out" not in run_all.command("vae_step", "cpu", False, None)


def test_kl_normal_speed_writes_page_and_plot(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    script = _script("kl_normal_speed", monkeypatch)
    out = tmp_path / "kl_normal_speed.md"
    assert script.main(["--quick", "--max-size", "1e3", "--out", str(out)]) == 0
    text = out.read_text()
    _assert_header(text)
    assert "| 1e+03 |" in text and "![kl_normal_speed](kl_normal_speed.png)" in text
    _assert_png(tmp_path / "kl_normal_speed.png")


def test_kl_kernels_writes_page_and_plot(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    script = _script("kl_kernels", monkeypatch)
    assert script.sizes_for(torch.device("cuda"), True, None) == [10**3, 10**5, 10**7, 10**8]
    assert script.sizes_for(torch.device("cpu"), True, None) == [10**3, 10**5, 10**7]
    out = tmp_path / "kl_kernels.md"
    assert script.main(["--quick", "--max-size", "1e3", "--out", str(out)]) == 0
    text = out.read_text()
    _assert_header(text)
    assert text.count("| 1e+03 |") == len(script.FAMILIES)
    _assert_png(tmp_path / "kl_kernels.png")


def test_plots_of_the_slow_benchmarks(tmp_path, monkeypatch):
    """The plots of the scripts too slow to run here, drawn from a few made-up results."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    mc = _script("kl_analytic_vs_mc", monkeypatch)
    curves = {"Normal ‖ Normal": {2: (2.0, 1.9), 16: (3.0, 0.7)}, "Gamma ‖ Gamma": {2: (1.0, 2.0)}}
    _assert_png(mc.plot_samples(tmp_path / "s.png", curves))
    times = {"closed form": ([2, 8], [1e-4, 3e-4]), "MC n=2": ([2, 8], [2e-4, 2.5e-4])}
    _assert_png(mc.plot_mvn(tmp_path / "m.png", times, crossover=8))
    _assert_png(mc.plot_mvn(tmp_path / "m2.png", times, crossover=None))

    elbo = _script("elbo_gradients", monkeypatch)
    results = {
        "at initialisation": {elbo.REFERENCE: (1e-3, 2.0, 0.5), "Trace_ELBO": (1e-3, 6.0, 0.2)},
        "after 1 step": {"Trace_ELBO": (1e-3, 6.0, 0.2)},  # the reference failed here
    }
    _assert_png(elbo.plot(tmp_path / "e.png", results))

    vae = _script("vae_step", monkeypatch)
    steps = {32: {vae.REFERENCE: 1e-3, "probgen fast (meanfield)": 2e-3}, 1024: {"x": 1e-2}}
    _assert_png(vae.plot(tmp_path / "v.png", steps))


def test_copy_bandwidth_counts_read_and_write(monkeypatch):
    from probgen import benchmarking

    seconds = 0.5
    monkeypatch.setattr(
        benchmarking, "time_fn", lambda fn, **kw: benchmarking.Timing(seconds, seconds, seconds, 1)
    )
    assert benchmarking.copy_bandwidth("cpu", nbytes=4_000) == 2 * 4_000 / seconds
