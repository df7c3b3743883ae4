"""``probgen tour``: closed-form vs Monte Carlo KL on a few pairs, with the method shown."""

from __future__ import annotations

import argparse

NAME = "tour"
HELP = "a short tour of probgen's KL: closed form vs Monte Carlo on a few pairs"


def _samples(text: str) -> int:
    """``--samples``: an integer ≥ 2 (a standard error needs two samples)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 2:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 2, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--samples", type=_samples, default=10_000, help="Monte Carlo samples (≥ 2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo estimates")


def _pairs():
    import torch
    import torch.distributions as td

    f64 = torch.float64
    t = lambda *v: torch.tensor(v if len(v) > 1 else v[0], dtype=f64)  # noqa: E731
    mix = td.MixtureSameFamily(td.Categorical(t(0.3, 0.7)), td.Normal(t(-1.0, 2.0), t(0.5, 1.0)))
    return [
        ("Normal(0, 1) ‖ Normal(1, 2)", td.Normal(t(0.0), t(1.0)), td.Normal(t(1.0), t(2.0))),
        (
            "Gamma(2947581, 2.0780566) ‖ Gamma(2944633.5, 2.0759785) [float32]",
            td.Gamma(torch.tensor(2947581.0), torch.tensor(2.0780566)),
            td.Gamma(torch.tensor(2944633.5), torch.tensor(2.0759785)),
        ),
        ("Poisson(0) ‖ Poisson(1)", td.Poisson(t(0.0)), td.Poisson(t(1.0))),
        ("Beta(2, 3) ‖ Beta(3, 2)", td.Beta(t(2.0), t(3.0)), td.Beta(t(3.0), t(2.0))),
        ("Kumaraswamy(2, 3) ‖ Beta(2, 3)", td.Kumaraswamy(t(2.0), t(3.0)), td.Beta(t(2.0), t(3.0))),
        ("Mixture of 2 Normals ‖ Normal(0, 2)", mix, td.Normal(t(0.0), t(2.0))),
    ]


def run(args: argparse.Namespace) -> int:
    import probgen
    from probgen.kl import lookup, torch_kl_only

    print(f"{'pair':<66} {'probgen (auto)':>26} {'torch':>12} {'Monte Carlo (naive)':>24}")
    for name, p, q in _pairs():
        auto = probgen.kl_divergence(
            p, q, return_info=True, num_samples=args.samples, seed=args.seed
        )
        mc = probgen.kl_divergence(
            p, q, method="mc", num_samples=args.samples, seed=args.seed, return_info=True
        )
        with torch_kl_only():
            torch_value = "—" if lookup(p, q) is None else f"{float(_torch_kl(p, q)):.6g}"
        shown = f"{float(auto.value):.6g} [{auto.method}]"
        print(
            f"{name:<66} {shown:>26} {torch_value:>12} "
            f"{float(mc.value):>11.6g} ± {float(mc.stderr):<9.2g}"
        )
    print("\n[analytic] = registered closed form, [mc] = Monte Carlo (no closed form exists);")
    print("'torch' is torch.distributions.kl_divergence without probgen's closed forms.")
    return 0


def _torch_kl(p, q):
    from torch.distributions import kl_divergence

    return kl_divergence(p, q)
