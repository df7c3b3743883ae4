"""Closed-form KL divergences: beta (being written)."""
