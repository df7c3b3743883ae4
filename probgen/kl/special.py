"""Closed-form KL divergences: special (being written)."""
