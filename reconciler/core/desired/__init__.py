"""Desired state: which files are environments, and loading them from a snapshot."""
