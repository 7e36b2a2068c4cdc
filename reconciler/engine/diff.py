"""Diff: two registered versions side by side, or one against git's version.

1. Read the left version from the registry.
2. Read the right one from the registry, or git's environment (at a ref, default the
   working tree).
3. Read the requirement files both sides name, and compare (pure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.engine.read import close, load, texts
from reconciler.ports import NotFound, SourceError

if TYPE_CHECKING:
    from reconciler.core.governance.version_diff import Side
    from reconciler.engine.context import Context


def version_diff(
    engine: Context, left: tuple[str, str], right: tuple[str, str] | None, ref: str | None = None
) -> dict[str, Any]:
    """NAME:V1 against NAME:V2, or against git's version of NAME (at ``ref``, default
    the working tree) when ``right`` is None."""
    from reconciler.core.governance.package_diff import needed_blobs
    from reconciler.core.governance.version_diff import Side, compare

    before = _registered(engine, *left)
    snapshot = engine.source.snapshot(ref)
    try:
        desired, _ = load(engine, snapshot)
        if right is not None:
            after = _registered(engine, *right)
        else:
            env = desired.environments.get(left[0])
            if env is None:
                raise SourceError(f"no environment {left[0]!r} in git ({snapshot.label})")
            after = Side(
                f"{env.name} in git ({snapshot.label})",
                env.name,
                env.version,
                env.content,
                env.digest,
                env.description,
                env.tags,
                "git",
            )
        blobs = needed_blobs(before.content, after.content)
        found = texts(engine, blobs, snapshot, desired) if blobs else {}
    finally:
        close(snapshot)
    return compare(before, after, found)


def _registered(engine: Context, name: str, version: str) -> Side:
    from reconciler.core.governance.version_diff import Side

    found = engine.registry.get_version(name, version)
    if found is None or found.content is None:
        raise NotFound(f"no version {name}:{version} in {engine.registry.url}")
    return Side(
        f"{name}:{version}",
        name,
        version,
        found.content,
        found.effective_digest,
        found.description,
        found.tags,
        "registry",
    )
