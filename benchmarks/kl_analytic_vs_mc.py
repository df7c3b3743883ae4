"""Closed-form vs sampled KL: time, estimator spread, time to a given accuracy, MVN crossover.

For each pair with a closed form and a sampler, at batch 256:

* the closed form's time;
* for n = 1 … 1024 samples per batch element, the Monte Carlo time and the relative standard
  deviation of the estimate (over independent seeds, relative to the exact value);
* the number of samples, and the time, needed for a 1% relative standard deviation
  (extrapolated with sd ∝ 1/√n from the largest n measured, time ∝ n);

and for the full-covariance MultivariateNormal, the dimension at which a 1-sample estimate
becomes cheaper than the O(d³) closed form (the "crossover"), and the dimension at which Monte
Carlo *at 1% accuracy* would be (it never is, in the dimensions measured, when that is so).

    python benchmarks/kl_analytic_vs_mc.py [--device cuda] [--quick] [--out PAGE.md]

Writes ``docs/benchmarks/kl_analytic_vs_mc.md`` (CPU) or
``docs/benchmarks/gpu/kl_analytic_vs_mc.md`` (CUDA), or ``--out``, and next to it the plots
``kl_analytic_vs_mc_samples.png`` (spread and time against the number of samples, per pair) and
``kl_analytic_vs_mc_mvn.png`` (time against dimension for the full-covariance MVN).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.distributions as td
from _families import make

import probgen
from probgen.benchmarking import (
    Failures,
    Panel,
    default_output,
    environment,
    measure_side_by_side,
    resolve_device,
    save_figure,
    write_markdown,
)
from probgen.kl import lookup

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"
BATCH = 256
PAIRS = [
    (td.Normal, td.Normal),
    (td.Independent, td.Independent),
    (td.Gamma, td.Gamma),
    (td.Beta, td.Beta),
    (td.Dirichlet, td.Dirichlet),
    (td.Laplace, td.Laplace),
    (td.Gumbel, td.Gumbel),
    (td.Poisson, td.Poisson),
    (td.Categorical, td.Categorical),
    (td.MultivariateNormal, td.MultivariateNormal),
    (td.Kumaraswamy, td.Beta),  # in float64: float32 samples round onto x = 1 (NaN density)
]
FLOAT64_ONLY = {(td.Kumaraswamy, td.Beta)}


def _spread(p, q, exact, n, seeds):
    values = torch.stack([probgen.mc_kl(p, q, n, seed=s).value for s in range(seeds)])
    # Relative sd of one estimate, averaged over the batch (exact KL > 0 almost surely).
    return ((values.std(0) / exact.abs()).mean()).item()


def pair_rows(device, dtype, sample_counts, seeds, rounds, failures):
    """Table rows, and per pair the curves {n: (MC time / closed-form time, relative sd)}."""
    rows, curves = [], {}
    for tp, tq in PAIRS:
        with failures.guard(f"{tp.__name__} ‖ {tq.__name__}"):
            _pair(tp, tq, device, dtype, sample_counts, seeds, rounds, rows, curves)
    return rows, curves


def _pair(tp, tq, device, dtype, sample_counts, seeds, rounds, rows, curves):
    torch.manual_seed(0)
    elements = BATCH * (
        4 if tp in (td.Independent, td.Dirichlet, td.Categorical, td.MultivariateNormal) else 1
    )
    pair_dtype = torch.float64 if (tp, tq) in FLOAT64_ONLY else dtype
    p, q = make(tp, elements, pair_dtype, device), make(tq, elements, pair_dtype, device)
    if lookup(p, q) is None:
        return
    exact = probgen.kl_divergence(p, q, method="analytic")
    candidates = {"analytic": lambda p=p, q=q: probgen.kl_divergence(p, q, validate=False)}
    for n in sample_counts:
        candidates[f"mc{n}"] = lambda p=p, q=q, n=n: probgen.mc_kl(p, q, max(n, 2), validate=False)
    times = measure_side_by_side(candidates, device=device, rounds=rounds)
    spreads = {n: _spread(p, q, exact, max(n, 2), seeds) for n in sample_counts}
    n_max = sample_counts[-1]
    n_needed = math.ceil(max(n_max, 2) * (spreads[n_max] / 0.01) ** 2)
    t_needed = times[f"mc{n_max}"].median * n_needed / max(n_max, 2)
    t_analytic = times["analytic"].median
    name = f"{tp.__name__} ‖ {tq.__name__}"
    if pair_dtype != dtype:
        name += f" ({str(pair_dtype).replace('torch.', '')})"
    cells = [f"{times[f'mc{n}']} / {spreads[n]:.3g}" for n in sample_counts]
    curves[name] = {
        max(n, 2): (times[f"mc{n}"].median / t_analytic, spreads[n]) for n in sample_counts
    }
    rows.append(
        [
            name,
            times["analytic"],
            *cells,
            f"{n_needed:,}",
            f"{t_needed * 1e3:.3g} ms ({t_needed / t_analytic:,.0f}×)",
        ]
    )
    print(*rows[-1], sep=" | ", flush=True)


def mvn_crossover(device, dtype, dims, rounds, failures):
    """Table rows, the crossover dimension (or None), and the times {label: (dims, seconds)}."""
    rows, crossover = [], None
    times = {"closed form": ([], []), "MC n=2": ([], []), "MC n=128": ([], [])}
    for d in dims:
        with failures.guard(f"MultivariateNormal, d = {d}"):
            crossover = _mvn(d, device, dtype, rounds, rows, times, crossover)
    return rows, crossover, times


def _mvn(d, device, dtype, rounds, rows, times, crossover):
    torch.manual_seed(0)
    p = make(td.MultivariateNormal, BATCH * d, dtype, device, event=d)
    q = make(td.MultivariateNormal, BATCH * d, dtype, device, event=d)
    exact = probgen.kl_divergence(p, q, method="analytic")
    t = measure_side_by_side(
        {
            "analytic": lambda p=p, q=q: probgen.kl_divergence(p, q, validate=False),
            "mc2": lambda p=p, q=q: probgen.mc_kl(p, q, 2, validate=False),
            "mc128": lambda p=p, q=q: probgen.mc_kl(p, q, 128, validate=False),
        },
        device=device,
        rounds=rounds,
    )
    spread = _spread(p, q, exact, 128, 8)
    n_needed = math.ceil(128 * (spread / 0.01) ** 2)
    t_needed = t["mc128"].median * n_needed / 128
    if crossover is None and t["mc2"].median < t["analytic"].median:
        crossover = d
    rows.append(
        [
            d,
            t["analytic"],
            t["mc2"],
            t["mc128"],
            f"{spread:.3g}",
            f"{n_needed:,}",
            f"{t_needed * 1e3:.3g} ms",
        ]
    )
    for label, key in (("closed form", "analytic"), ("MC n=2", "mc2"), ("MC n=128", "mc128")):
        times[label][0].append(d)
        times[label][1].append(t[key].median)
    print(*rows[-1], sep=" | ", flush=True)
    return crossover


def plot_samples(path, curves):
    """Relative sd and MC time / closed-form time against the number of samples, per pair."""
    sd = {name: (list(c), [v[1] for v in c.values()]) for name, c in curves.items()}
    cost = {name: (list(c), [v[0] for v in c.values()]) for name, c in curves.items()}
    panels = [
        Panel(
            "Relative sd of one MC estimate",
            "samples n",
            "sd / exact KL",
            sd,
            logx=True,
            logy=True,
            hlines={"1%": 0.01},
        ),
        Panel(
            "MC time / closed-form time",
            "samples n",
            "ratio",
            cost,
            logx=True,
            logy=True,
            hlines={"closed form": 1.0},
        ),
    ]
    return save_figure(path, panels, title=f"Closed form vs Monte Carlo, batch {BATCH}")


def plot_mvn(path, times, crossover):
    """Closed-form and MC times against the dimension of a full-covariance MVN."""
    panel = Panel(
        f"Full-covariance MVN, batch {BATCH}",
        "dimension d",
        "seconds",
        times,
        logx=True,
        logy=True,
        vlines={} if crossover is None else {f"MC n=2 cheaper from d = {crossover}": crossover},
    )
    return save_figure(path, [panel])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="the page (.md) to write")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    out = args.out if args.out is not None else default_output(DOCS, "kl_analytic_vs_mc", device)
    if args.threads:
        torch.set_num_threads(args.threads)
    counts = [1, 16, 256] if args.quick else [1, 4, 16, 64, 256, 1024]
    seeds, rounds = (8, 5) if args.quick else (16, 10)
    dims = [2, 8, 32, 64, 128] if args.quick else [2, 4, 8, 16, 32, 64, 128, 256]
    failures = Failures()
    rows, curves = pair_rows(device, torch.float32, counts, seeds, rounds, failures)
    mvn_rows, crossover, mvn_times = mvn_crossover(device, torch.float32, dims, rounds, failures)
    stem = out.with_suffix("")
    images = [
        plot_samples(stem.with_name(f"{stem.name}_samples.png"), curves),
        plot_mvn(stem.with_name(f"{stem.name}_mvn.png"), mvn_times, crossover),
    ]
    write_markdown(
        out,
        "Closed-form vs Monte Carlo KL",
        [
            (
                "Time and relative sd of one estimate, batch 256, float32",
                [
                    "pair",
                    "closed form",
                    *[f"MC n={n}: time / rel. sd" for n in counts],
                    "n for 1% rel. sd",
                    "MC time at 1% (vs closed form)",
                ],
                rows,
            ),
            (
                f"Full-covariance MVN, batch {BATCH}: a 2-sample MC estimate is cheaper "
                + (f"from d = {crossover}" if crossover else "in none of these dimensions"),
                [
                    "d",
                    "closed form",
                    "MC n=2",
                    "MC n=128",
                    "rel. sd at n=128",
                    "n for 1%",
                    "MC time at 1%",
                ],
                mvn_rows,
            ),
        ],
        env=environment(device),
        notes=(
            "Medians of interleaved rounds. Relative sd: standard deviation of the estimate over "
            "independent seeds divided by the exact KL, averaged over the batch (naive "
            "estimator, n = 1 measured as n = 2, the least with a standard error). 'n for 1%' "
            "extrapolates sd ∝ 1/√n from the largest n; its time scales the largest n's time "
            "linearly. Both the closed form and the estimates run without parameter validation "
            "(`validate=False`): `kl_divergence` validates once before either, and for a full "
            "MVN the check (a Cholesky factor of each covariance) costs as much as the closed "
            "form."
            + (" Each call timed with CUDA events." if device.type == "cuda" else "")
            + (" Quick mode." if args.quick else "")
        ),
        images=images,
        failures=failures,
    )
    print(f"written to {out}", file=sys.stderr)
    return failures.exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
