"""Governance: policies, packages and their diffs, findings, audit evidence."""
