"""Closed-form KL divergences: multivariate (being written)."""
