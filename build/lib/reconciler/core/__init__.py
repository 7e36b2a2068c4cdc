"""Pure domain core: models, parsing of bytes, content digest, planning. No I/O."""
