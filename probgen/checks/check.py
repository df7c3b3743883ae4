"""``check_kl``: a KL implementation against an independent reference and the KL's properties.

Tolerances, per batch element: ``reference.error + rtol·|reference| + atol``, with defaults from
the dtype's machine epsilon ε: ``rtol = √ε`` (1.5e-8 in float64, 3.5e-4 in float32) and
``atol = 64·ε`` (1.4e-14, 7.6e-6). A reference that could not be computed gives the status
``"no reference"``, never ``"pass"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.distributions import Distribution, Independent

from probgen.checks import properties as props
from probgen.checks.densities import _is_delta, _is_masked, batch_elements, same_law_view
from probgen.checks.references import reference_kl
from probgen.checks.report import KLCheckReport, PropertyResult, Reference

__all__ = [
    "assert_kl_close",
    "assert_kl_properties",
    "check_kl",
    "default_tolerances",
    "references_for",
]

KLFn = Callable[[Distribution, Distribution], torch.Tensor]
_CACHE: dict[tuple, Reference] = {}
_CACHE_SIZE = 4096


def default_tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """``(rtol, atol) = (√ε, 64·ε)`` for the dtype's machine epsilon ε."""
    eps = torch.finfo(dtype).eps
    return math.sqrt(eps), 64 * eps


def _fingerprint(d: Distribution) -> tuple:
    from probgen.checks.densities import given_params

    parts: list = [type(d).__qualname__, type(d).__module__]
    for name in ("base_dist",):
        if hasattr(d, name) and isinstance(getattr(d, name), Distribution):
            parts.append(_fingerprint(getattr(d, name)))
    for attr in ("reinterpreted_batch_ndims", "_mask", "v", "log_density"):
        v = getattr(d, attr, None)
        if torch.is_tensor(v):
            parts.append((attr, tuple(v.shape), tuple(v.double().flatten().tolist())))
        elif v is not None:
            parts.append((attr, v))
    if not isinstance(d, Independent):
        for k, v in sorted(given_params(d).items()):
            parts.append((k, tuple(v.shape), tuple(v.detach().double().flatten().tolist())))
    return tuple(parts)


def references_for(p: Distribution, q: Distribution, shape: torch.Size, **kw) -> list[Reference]:
    """References for every batch element of (p, q) broadcast to ``shape``, cached by the
    parameters' float64 values (so a float32 pair and its float64 copy share them)."""
    out = []
    for a, b in zip(batch_elements(p, shape), batch_elements(q, shape), strict=True):
        key = (_fingerprint(a), _fingerprint(b), tuple(sorted(kw.items())))
        ref = _CACHE.get(key)
        if ref is None:
            ref = reference_kl(a, b, **kw)
            if math.isnan(ref.value) and ref.ok:
                ref = Reference.missing(ref.method, f"the reference came out NaN ({ref.detail})")
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.clear()
            _CACHE[key] = ref
        out.append(ref)
    return out


def _dtype(p: Distribution) -> torch.dtype:
    return props._dtype(p)


def _incompatible(pair: str, dtype: str, message: str) -> KLCheckReport:
    return KLCheckReport(
        pair, dtype, math.nan, None, math.nan, math.nan, (), "incompatible", message
    )


def check_kl(
    p: Distribution,
    q: Distribution,
    *,
    kl_fn: KLFn | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    properties: Iterable[str] | None = None,
    mc_samples: int = 4000,
    reference_mc_samples: int = 20_000,
    seed: int = 0,
    z: float = 5.0,
) -> KLCheckReport:
    """Check KL(p ‖ q) as computed against an independent reference and the KL's properties.

    Args:
        p, q: distributions with the same event space and broadcastable batch shapes.
        kl_fn: the implementation under test, ``kl_fn(p, q) -> Tensor`` of shape
            ``broadcast(p.batch_shape, q.batch_shape)``. Default: the closed form the registry
            dispatches to (``torch.distributions.kl_divergence``, probgen's forms included).
        rtol, atol: tolerances; defaults from :func:`default_tolerances` for p's dtype.
        properties: names from :data:`probgen.checks.properties.PROPERTIES` to check (default
            all that apply).
        mc_samples: samples of the ``"analytic vs mc"`` property.
        reference_mc_samples: samples of a Monte Carlo reference (pairs without an exact one).
        seed, z: seed of every Monte Carlo estimate; standard errors a Monte Carlo value may be off.

    Returns:
        :class:`KLCheckReport`. Incompatible pairs (different event spaces, non-broadcastable
        batch shapes, a pair the closed form refuses) get the status ``"incompatible"``.

    Raises:
        TypeError: if ``p`` or ``q`` is not a distribution.
        ValueError: on an invalid parameter of ``p`` or ``q`` (named, with its value), a
            negative or non-finite tolerance, ``z ≤ 0``, or fewer than 2 Monte Carlo samples.
    """
    from probgen.kl.registry import lookup
    from probgen.kl.validation import check_distribution

    for name, d in (("p", p), ("q", q)):
        if not isinstance(d, Distribution):
            raise TypeError(
                f"{name} must be a torch.distributions.Distribution, got {type(d).__name__}"
            )
        check_distribution(d, name)  # an invalid parameter is bad input, not a failed check
    _check_settings(rtol=rtol, atol=atol, z=z)
    for name, n in (("mc_samples", mc_samples), ("reference_mc_samples", reference_mc_samples)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"{name} must be an integer ≥ 2, got {n!r}")

    pair = f"{type(p).__name__} ‖ {type(q).__name__}"
    dtype = _dtype(p)
    dname = str(dtype).replace("torch.", "")
    d_rtol, d_atol = default_tolerances(dtype)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    wanted = set(props.PROPERTIES if properties is None else properties)
    unknown = wanted - set(props.PROPERTIES)
    if unknown:
        raise ValueError(f"properties must be among {props.PROPERTIES}, got {sorted(unknown)}")

    if p.event_shape != q.event_shape and (
        same_law_view(p).event_shape != same_law_view(q).event_shape
    ):
        return _incompatible(
            pair, dname, f"event shapes differ: p {tuple(p.event_shape)}, q {tuple(q.event_shape)}"
        )
    try:
        shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    except RuntimeError:
        return _incompatible(
            pair,
            dname,
            f"batch shapes do not broadcast: p {tuple(p.batch_shape)}, q {tuple(q.batch_shape)}",
        )
    fn = kl_fn or lookup(p, q)
    if fn is None:
        return _incompatible(pair, dname, "no closed form is registered for this pair")
    try:
        value = fn(p, q).detach()
    except NotImplementedError as e:
        return _incompatible(pair, dname, f"the closed form refuses the pair: {e}")
    except Exception as e:  # a crash on valid input is a failure, reported, not raised
        return KLCheckReport(
            pair,
            dname,
            math.nan,
            None,
            math.inf,
            0.0,
            (),
            "fail",
            f"KL raised {type(e).__name__}: {e}",
        )
    value = value.expand(shape) if value.shape != shape else value

    refs = references_for(p, q, shape, mc_samples=reference_mc_samples, seed=seed, z=z)

    def tol(ref: float) -> float:
        return rtol * (abs(ref) if math.isfinite(ref) else 0.0) + atol

    # Value vs reference, per element.
    flat = value.double().reshape(-1)
    worst = (-math.inf, 0, 0.0, 0.0)
    missing = [r for r in refs if not r.ok]
    for i, ref in enumerate(refs):
        if not ref.ok:
            continue
        v = float(flat[i])
        err = 0.0 if (math.isinf(v) and v == ref.value) else abs(v - ref.value)
        err = math.inf if math.isnan(err) else err
        t = ref.error + tol(ref.value)
        if err - t > worst[0]:
            worst = (err - t, i, err, t)
    _, iw, err, t = worst
    ref_w = refs[iw]

    results: list[PropertyResult] = []
    same_type = type(p) is type(q)
    rev_fn = kl_fn if (kl_fn is not None and same_type) else lookup(q, p)
    values = [value]
    v_qp = None
    if rev_fn is not None and ("asymmetry" in wanted or "non-negative" in wanted):
        try:
            v_qp = rev_fn(q, p).detach().expand(shape)
            if same_type:  # KL(q ‖ p) is the same function's; else another pair's finding
                values.append(v_qp)
        except Exception:  # reported by the audit of the reverse pair
            v_qp = None
    if "zero on equal" in wanted:
        # With an explicit kl_fn, KL(p ‖ p) is that function's only for a pair of one type.
        self_fn = lookup(p, p) if kl_fn is None else (kl_fn if same_type else None)
        if self_fn is None:
            results.append(PropertyResult("zero on equal", None, detail="p and q differ in type"))
        else:
            results.append(_guard("zero on equal", props.zero_on_equal, self_fn, p, atol))
    if "non-negative" in wanted:
        results.insert(0, props.non_negative(values))
    if "asymmetry" in wanted:
        refs_qp = (
            references_for(q, p, shape, mc_samples=reference_mc_samples, seed=seed, z=z)
            if v_qp is not None
            else None
        )
        sym = props.known_symmetric(p, q)
        results.append(props.asymmetry(value, v_qp, refs, refs_qp, tol, sym))
    if "affine invariance" in wanted:
        results.append(_guard("affine invariance", props.invariance_affine, fn, p, q, value, tol))
    if "independent additivity" in wanted:
        from torch.distributions import kl_divergence

        results.append(
            _guard(
                "independent additivity",
                props.independent_additivity,
                kl_divergence,
                p,
                q,
                value,
                tol,
            )
        )
    if "analytic vs mc" in wanted:
        results.append(
            _guard(
                "analytic vs mc",
                lambda: props.analytic_vs_mc(
                    p, q, value, tol, num_samples=mc_samples, seed=seed, z=z
                ),
            )
        )
    if "log-density vs scipy" in wanted and not shape:
        for d, label in ((p, "p"), (q, "q")):
            if not (_is_delta(d) or _is_masked(d)):
                results.append(props.log_density_vs_scipy(d, label, seed=seed))

    case = f"p={_describe(p)}, q={_describe(q)}"
    failed = err > t or any(r.held is False for r in results)
    if failed:
        status, message = "fail", f"{_failure_message(err, t, results)}\n  at {case}"
    elif missing:
        status, message = "no reference", f"{missing[0].method}: {missing[0].detail}"
    else:
        status, message = "pass", ""
    return KLCheckReport(
        pair, dname, float(flat[iw]), ref_w, err, t, tuple(results), status, message
    )


def _check_settings(**values: float | None) -> None:
    """Tolerances must be finite and ≥ 0 (``None``: the default), ``z`` finite and > 0."""
    for name, v in values.items():
        if v is None:
            continue
        low_ok = v > 0 if name == "z" else v >= 0
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not math.isfinite(v)
            or not low_ok
        ):
            bound = "> 0" if name == "z" else "≥ 0"
            raise ValueError(f"{name} must be a finite number {bound}, got {v!r}")


def _guard(name: str, f, *args) -> PropertyResult:
    """Run a property check; a closed form missing for a derived pair makes it n/a, any
    other exception (a crash of the implementation on valid input) makes it fail."""
    try:
        return f(*args)
    except NotImplementedError as e:
        return PropertyResult(name, None, detail=f"no closed form: {e}"[:120])
    except Exception as e:
        return PropertyResult(name, False, math.inf, 0.0, f"raised {type(e).__name__}: {e}"[:160])


def _describe(d: Distribution) -> str:
    from probgen.checks.densities import given_params

    if isinstance(d, Independent):
        return f"Independent({_describe(d.base_dist)}, {d.reinterpreted_batch_ndims})"
    params = ", ".join(f"{k}={v.tolist()}" for k, v in given_params(d).items())
    return f"{type(d).__name__}({params})"[:300]


def _failure_message(err: float, tol: float, results: list[PropertyResult]) -> str:
    parts = []
    if err > tol:
        parts.append(f"|value − reference| = {err:.3g} > tolerance {tol:.3g}")
    parts += [f"{r.name} failed" for r in results if r.held is False]
    return "; ".join(parts)


def assert_kl_close(p: Distribution, q: Distribution, **kwargs) -> KLCheckReport:
    """Like :func:`check_kl` with only the reference comparison; raises ``AssertionError``
    (with the report as its message) unless the value matches the reference."""
    report = check_kl(p, q, properties=(), **kwargs)
    if not report.passed:
        raise AssertionError(str(report))
    return report


def assert_kl_properties(p: Distribution, q: Distribution, **kwargs) -> KLCheckReport:
    """:func:`check_kl` with every property; raises ``AssertionError`` (with the report as its
    message) unless the status is ``"pass"``."""
    report = check_kl(p, q, **kwargs)
    if not report.passed:
        raise AssertionError(str(report))
    return report
