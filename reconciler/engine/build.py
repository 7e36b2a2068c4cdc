"""Build: build an environment's image now, whatever its build record says.

1. Take the registry's lock; read git and the registry.
2. Find the version: git's (NAME) or any registered one (NAME:VERSION).
3. Build it, with the build context read from git.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.engine.read import blob_reader, close, load
from reconciler.ports import BuildError

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildOutcome
    from reconciler.engine.context import Context


def build(
    engine: Context, name: str, version: str | None = None, ref: str | None = None
) -> BuildOutcome:
    """Build NAME (its version in git) or NAME:VERSION (any registered version) now,
    whatever its record says."""
    from reconciler.core.build.jobs import BuildTarget, build_targets

    if engine.builds is None:
        raise BuildError("builds are not configured: set --image-registry")
    url = engine.registry.url
    with engine.registry.lock(engine.lock_timeout):
        snapshot = engine.source.snapshot(ref)
        try:
            desired, _ = load(engine, snapshot)
            state = engine.registry.read_state()
            container = state.containers.get(name)
            if container is None:
                raise BuildError(f"no environment {name!r} in {url}")
            targets = [t for t in build_targets(desired, state) if t.name == name]
            if version is not None and not any(t.version == version for t in targets):
                found = container.get(version)
                if found is None or found.content is None or found.digest is None:
                    raise BuildError(f"no version {name}:{version} in {url}")
                targets = [BuildTarget(name, version, found.digest, found.content)]
            elif version is not None:
                targets = [t for t in targets if t.version == version]
            if not targets:
                raise BuildError(f"{name} is not in git; name a version: {name}:VERSION")
            return engine.builds.run(targets, blob_reader(engine, snapshot), force=True)
        finally:
            close(snapshot)
