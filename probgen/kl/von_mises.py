"""Closed-form KL divergences: von_mises (being written)."""
