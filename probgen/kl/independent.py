"""Closed-form KL divergences: independent (being written)."""
