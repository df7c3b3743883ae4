"""Closed-form KL divergences: discrete (being written)."""
