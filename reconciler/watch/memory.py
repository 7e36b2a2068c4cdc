"""What a long-running reconciler keeps in memory between triggers, so that one edit in a
big repository costs one edit's work: the parse memo, resolved environments and their
plans, the working tree's listing and the registry's state (see adapters/cache.py).

All are accelerators with the same answers as a fresh read. The registry state is reused
only while the registry's state token is the one this process saw after its own last write
(any other writer changes the token, and the next read is a full one).
"""

from __future__ import annotations

import gc
from dataclasses import replace

from reconciler.adapters.cache import KeptCache, KeptState
from reconciler.engine import Engine


def keep_in_memory(engine: Engine) -> Engine:
    """An engine on the same ports, with its caches and registry state kept between
    triggers (the given one is left as it was)."""
    cache = engine.cache if isinstance(engine.cache, KeptCache) else KeptCache(engine.cache)
    registry = engine.registry
    if not isinstance(registry, KeptState):
        registry = KeptState(registry)
    engine.source.keep_listing()
    return replace(engine, cache=cache, registry=registry)


def settle() -> None:
    """After a first reconcile has filled the memories: move everything alive out of the
    cyclic garbage collector's view. Its full collections would otherwise walk every kept
    object now and then (some 100 ms with 10,000 environments, in the middle of a
    reconcile); what is kept is released by reference counting as before. The parser is
    imported here too: a start that found every file in the parse memo has not needed it
    yet, and importing it then would delay the first edit by some 200 ms."""
    import reconciler.core.spec.environment  # noqa: F401  (it imports the YAML parser)

    gc.collect()
    gc.freeze()


def flush_when_due(engine: Engine) -> None:
    """Called while the loop is idle: write what the memories keep, if it is time."""
    if isinstance(engine.cache, KeptCache):
        engine.cache.flush_due()


def flush(engine: Engine) -> None:
    if isinstance(engine.cache, KeptCache):
        engine.cache.flush()
