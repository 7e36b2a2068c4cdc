"""Governance: policies, packages and their diffs, findings, audit evidence, and who
consumes each environment (consumers, pins)."""
