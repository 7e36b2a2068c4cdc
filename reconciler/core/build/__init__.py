"""Image builds: what to build, where it goes, when to retry (the adapters build)."""
