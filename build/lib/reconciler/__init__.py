"""reconciler: keep an environment registry exactly in step with a git directory."""

__version__ = "0.1.0"
