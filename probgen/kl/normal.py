"""Closed-form KL divergences: normal (being written)."""
