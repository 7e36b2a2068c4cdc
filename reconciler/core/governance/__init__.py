"""Governance: who consumes each environment, and what their references say."""
