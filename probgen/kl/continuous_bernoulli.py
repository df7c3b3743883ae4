"""Closed-form KL divergences: continuous_bernoulli (being written)."""
