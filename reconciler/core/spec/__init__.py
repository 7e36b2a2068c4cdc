"""The environment file format: YAML, validation, content digest, registry values."""
