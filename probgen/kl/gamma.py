"""Closed-form KL divergences: gamma (being written)."""
