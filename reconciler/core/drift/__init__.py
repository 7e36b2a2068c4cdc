"""The drift report: every environment classified against git."""
