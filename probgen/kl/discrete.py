"""Closed-form KL divergences between discrete laws.

The closed forms live in one module per family; importing this module registers them all:

* :mod:`probgen.kl.bernoulli`: Bernoulli ‖ Bernoulli (and the two-point core of the others),
* :mod:`probgen.kl.categorical`: Categorical and OneHotCategorical, in all four combinations,
* :mod:`probgen.kl.counts`: Binomial, Geometric and Poisson.

All are sums of the nonnegative term t(x, y) = x·log(x/y) − x + y of
:mod:`probgen.kl.discrete_terms`. Formulas and measured errors: ``docs/kl/discrete.md``.
"""

from probgen.kl import bernoulli, categorical, counts  # noqa: F401  (registers the pairs)
