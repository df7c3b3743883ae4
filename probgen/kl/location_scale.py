"""Closed-form KL divergences: location_scale (being written)."""
