"""Generators for the documentation site: the command reference from the argument parser,
the settings reference from the settings model, the JSON document pages from the shipped
schemas, and command samples from real runs. `hook.py` wires them into `mkdocs build`."""
