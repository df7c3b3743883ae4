"""Variational autoencoders as Pyro model/guide pairs: likelihoods, the model, KL schedules."""

from probgen.vae.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    BinomialLikelihood,
    CategoricalLikelihood,
    ContinuousBernoulliLikelihood,
    GaussianLikelihood,
    LaplaceLikelihood,
    Likelihood,
    get_likelihood,
)
from probgen.vae.model import VAE, kl_weighted, mlp
from probgen.vae.schedules import SCHEDULES, kl_schedule

__all__ = [
    "LIKELIHOODS",
    "SCHEDULES",
    "VAE",
    "BernoulliLikelihood",
    "BinomialLikelihood",
    "CategoricalLikelihood",
    "ContinuousBernoulliLikelihood",
    "GaussianLikelihood",
    "LaplaceLikelihood",
    "Likelihood",
    "get_likelihood",
    "kl_schedule",
    "kl_weighted",
    "mlp",
]
