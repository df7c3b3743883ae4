"""The adversarial add-on: the GAN value function on logits, its losses, the optimal
discriminator, the Jensen–Shannon divergence, bundled toy data and a training loop.

Light to import: the toys and the training loop (``probgen.gan.toys``, ``probgen.gan.train``)
are separate modules, imported on demand.
"""

from probgen.gan.checks import ProbabilitiesAsLogitsWarning
from probgen.gan.jsd import JSD_METHODS, EqualMixture, jsd
from probgen.gan.optimal import (
    LOG_4,
    expected_value,
    optimal_discriminator,
    optimal_logit,
    optimal_value,
)
from probgen.gan.result import Estimate
from probgen.gan.value import (
    GENERATOR_LOSSES,
    GANValue,
    discriminator_loss,
    generator_loss,
    log_d,
    log_one_minus_d,
    minimax_generator_loss,
    non_saturating_generator_loss,
    value_estimate,
)

__all__ = [
    "GENERATOR_LOSSES",
    "JSD_METHODS",
    "LOG_4",
    "EqualMixture",
    "Estimate",
    "GANValue",
    "ProbabilitiesAsLogitsWarning",
    "discriminator_loss",
    "expected_value",
    "generator_loss",
    "jsd",
    "log_d",
    "log_one_minus_d",
    "minimax_generator_loss",
    "non_saturating_generator_loss",
    "optimal_discriminator",
    "optimal_logit",
    "optimal_value",
    "value_estimate",
]
