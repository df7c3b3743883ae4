"""The ELBO, term by term, and the importance-weighted bound.

``elbo_terms`` splits a Pyro model/guide pair's ELBO into reconstruction and KL terms per site
(and says how each KL was computed); ``iwae_bound`` gives the IWAE log-likelihood estimate.
"""

from probgen.elbo.iwae import iwae_bound
from probgen.elbo.terms import ELBOTerms, elbo_terms, kl_fallback_sites

__all__ = ["ELBOTerms", "elbo_terms", "iwae_bound", "kl_fallback_sites"]
