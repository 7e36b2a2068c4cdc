"""The JSON documents (plan, drift, ...) built from core values: what renderers read."""
