"""reconciler: keep an environment registry exactly in step with a git directory."""

__all__ = ["__version__"]

try:
    # Written by setuptools-scm when the package is built or installed (from the git tag).
    from reconciler._version import __version__
except ImportError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
