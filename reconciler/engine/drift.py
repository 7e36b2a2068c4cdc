"""Drift: classify every environment, git at a ref against the registry, its build
records, the OCI registry and the base images' registries.

1. Read git and the registry; plan without self-heal (what git asks, what drifted).
2. Observe: the applied inventory, the build targets, each Dockerfile's bases and the
   lines findings point at; then, where image ports are wired, the tags in the OCI
   registry and where each built image's bases point now.
3. Classify (pure) into the drift report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from reconciler.engine.read import close, dockerfile_bases, lines_of, load
from reconciler.ports import BuildError

if TYPE_CHECKING:
    from reconciler.core.desired.types import DesiredState
    from reconciler.core.drift.report import DriftClass, DriftReport, Observations
    from reconciler.core.spec.model import RegistryState
    from reconciler.engine.context import Context
    from reconciler.ports import Snapshot


def drift(
    engine: Context, ref: str | None, fail_on: Iterable[DriftClass] | None = None
) -> DriftReport:
    from reconciler.core.drift.report import DEFAULT_FAIL_ON, make_report
    from reconciler.engine.plan import make

    snapshot = engine.source.snapshot(ref)
    try:
        desired, _ = load(engine, snapshot, watch_list=False)
        state = engine.registry.read_state()
        options = replace(engine.options, self_heal=False)
        plan = make(engine, desired, state, ref, snapshot, options)
        seen = observe(engine, desired, state, snapshot)
    finally:
        close(snapshot)
    return make_report(plan, desired, state, seen, DEFAULT_FAIL_ON if fail_on is None else fail_on)


def observe(
    engine: Context, desired: DesiredState, state: RegistryState, snapshot: Snapshot
) -> Observations:
    from reconciler.core.build.jobs import build_targets
    from reconciler.core.drift.report import Observations, finding_subjects

    bases = {
        name: tuple(dockerfile_bases(snapshot, env))
        for name, env in desired.environments.items()
        if env.dockerfile_path is not None
    }
    seen = Observations(
        applied=engine.inventory.load() if engine.inventory else {},
        build_targets={t.name: t.version for t in build_targets(desired, state)},
        dockerfile_bases=bases,
    )
    seen = replace(seen, finding_lines=lines_of(snapshot, finding_subjects(desired, seen)))
    if engine.images is None:
        return seen
    return _observe_images(engine, seen)


def _observe_images(engine: Context, seen: Observations) -> Observations:
    from concurrent.futures import ThreadPoolExecutor

    from reconciler.core.build.jobs import BuildStatus

    assert engine.images is not None
    records = engine.registry.build_records()
    tags: frozenset[str] | None = None
    error = None
    try:
        tags = frozenset(engine.images.pushed_tags())
    except BuildError as exc:
        error = str(exc)
    refs = sorted(
        {
            ref
            for name, version in seen.build_targets.items()
            if (r := records.get((name, version))) is not None and r.status is BuildStatus.SUCCEEDED
            for ref, digest in r.bases.items()
            if digest is not None
        }
    )
    digests: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    bases = engine.bases
    if bases is not None and refs:

        def one(ref: str) -> tuple[str, str | None, str | None]:
            try:
                return ref, bases.resolve(ref), None
            except BuildError as exc:  # unreachable: unknown, not drift
                return ref, None, str(exc)

        with ThreadPoolExecutor(min(8, len(refs))) as pool:
            for ref, digest, problem in pool.map(one, refs):
                if problem is None:
                    digests[ref] = digest
                else:
                    errors[ref] = problem
    return replace(
        seen,
        build_records=records,
        builds_configured=True,
        image_tags=tags,
        image_lookup_error=error,
        base_digests=digests,
        base_errors=errors,
    )
