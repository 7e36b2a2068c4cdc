"""Plan: what apply would change, as a value or as the plan document.

1. Answer from the cache when neither git nor the registry changed since the last plan
   of the same ref (no parsing, no registry read).
2. Otherwise read the desired state and the registry's state.
3. Plan (a fold over the environments; per-environment results kept by a long-running
   reconciler are reused).
4. Add package-level diffs, reading requirement files from git where a change needs them.
5. Build the document and keep it for the next plan.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler import __version__
from reconciler.engine.read import alongside, close, read, read_state, texts

if TYPE_CHECKING:
    from reconciler.core.desired.types import DesiredState
    from reconciler.core.plan.options import PlanOptions
    from reconciler.core.plan.types import Plan
    from reconciler.core.spec.model import RegistryState
    from reconciler.engine.context import Context
    from reconciler.ports import Snapshot


def plan(engine: Context, ref: str | None = None) -> Plan:
    return planned(engine, ref)[0]


def plan_with_state(
    engine: Context, ref: str | None = None
) -> tuple[Plan, DesiredState, RegistryState]:
    """The plan, and the desired state (consumers included) and registry state it was
    made from (for `refs` and `bump`)."""
    result, desired, state, _ = planned(engine, ref)
    return result, desired, state


def planned(
    engine: Context, ref: str | None, options: PlanOptions | None = None, watch_list: bool = True
) -> tuple[Plan, DesiredState, RegistryState, list[str] | None]:
    """Read ``ref``, plan it against the registry, with package diffs."""
    (desired, watch), state = alongside(
        lambda: read(engine, ref, watch_list=watch_list), lambda: read_state(engine)
    )
    return make(engine, desired, state, ref, None, options), desired, state, watch


def make(
    engine: Context,
    desired: DesiredState,
    state: RegistryState,
    ref: str | None,
    snapshot: Snapshot | None = None,
    options: PlanOptions | None = None,
) -> Plan:
    """The plan, with package diffs (requirement files read from ``snapshot``, or from
    a new snapshot of ``ref`` when one is needed)."""
    from reconciler.core.plan.packages import annotate_packages, package_blobs
    from reconciler.core.plan.planner import make_plan

    kept = engine.cache.kept_memos()
    memo = kept[1] if kept is not None else None
    result = make_plan(desired, state, engine.selection, options or engine.options, memo)
    if engine.stage is not None:  # one of several targets: the promotion gate
        result = engine.stage.gate(result, state)
    blobs = package_blobs(result, state)
    if not blobs:  # conda files only: their content is in the plan already
        return annotate_packages(result, state, {})
    if snapshot is not None:
        return annotate_packages(result, state, texts(engine, blobs, snapshot, desired))
    snapshot = engine.source.snapshot(ref)
    try:
        return annotate_packages(result, state, texts(engine, blobs, snapshot, desired))
    finally:
        close(snapshot)


def _settings_key(engine: Context, token: str | None) -> str | None:
    if token is None:
        return None
    parts = [__version__, token, engine.registry.url, repr(engine.selection), repr(engine.options)]
    parts.append(repr(engine.consumers))
    if engine.stage is not None:
        extra = engine.stage.cache_key()
        if extra is None:
            return None
        parts.append(extra)
    if engine.policy is not None:  # exceptions expire: a cached plan is good for one day
        parts += [repr(engine.policy), engine.today().isoformat()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def plan_document(engine: Context, ref: str | None = None) -> dict[str, Any]:
    """The plan as a document; answered from the cache when neither git nor the
    registry changed since the last plan of the same ref (no parsing, no registry read)."""
    return checked_plan_document(engine, ref)[0]


def checked_plan_document(
    engine: Context, ref: str | None = None
) -> tuple[dict[str, Any], Validity | None]:
    """The plan document, and what it stays valid for (None: it may not be reused)."""
    slot = "working-tree" if ref is None else f"ref:{ref}"
    token = engine.registry.state_token()
    key = _settings_key(engine, token)
    if key is not None:
        entry = engine.cache.load_plan(slot)
        if entry is not None and entry.get("key") == key:
            fingerprint = engine.source.fingerprint(ref, entry.get("watch"))
            if fingerprint is not None and fingerprint == entry.get("fingerprint"):
                document: dict[str, Any] = entry["document"]
                return document, Validity(fingerprint, entry.get("watch"))
    from reconciler.documents.plan import plan_document as document_of

    # The watch list only serves a plan that may be cached.
    result, _, _, watch = planned(engine, ref, watch_list=key is not None)
    document = document_of(
        result, engine.registry.url, engine.selection.path, predict(engine, result)
    )
    if key is not None and not result.has_errors and engine.registry.state_token() == token:
        # Taken after planning: a file edited meanwhile is too fresh to be trusted, and
        # the fingerprint then comes back None.
        fingerprint = engine.source.fingerprint(ref, watch)
        if fingerprint is not None:
            engine.cache.save_plan(
                slot,
                {"key": key, "fingerprint": fingerprint, "watch": watch, "document": document},
            )
            return document, Validity(fingerprint, watch)
    return document, None


@dataclass(frozen=True)
class Validity:
    """What a plan document stays valid for: the files' fingerprint (a commit, or the
    working tree's stat data over ``watch``) and the registry's state token it names."""

    fingerprint: str
    watch: list[str] | None


def predict(engine: Context, result: Plan) -> dict[str, str] | None:
    """The image each new version would get (None: builds are not configured)."""
    if engine.builds is None:
        return None
    return engine.builds.predict(
        c.write.digest
        for c in result.changes
        if c.write is not None
        and c.version
        and c.action.value in ("create", "new_version")
        and c.deferred is None
    )


def saved_plan(engine: Context, ref: str | None = None) -> dict[str, Any]:
    """`plan --out`: the plan document and everything `apply FILE` will write."""
    from reconciler.core.plan.saved import saved_plan as saved
    from reconciler.documents.plan import plan_document as document_of

    result, _, state, _ = planned(engine, ref)
    url = engine.registry.url
    document = document_of(result, url, engine.selection.path, predict(engine, result))
    return saved(result, document, state, url, ref)


def pull_request_plan(engine: Context, base: str, head: str) -> dict[str, Any]:
    """What merging ``head`` would do to the registry: head's tree planned against the
    registry, each change marked with whether this pull request introduces it (base's
    tree would not make it), and the findings of the environments it touches."""
    from reconciler.core.plan.planner import make_plan
    from reconciler.documents.plan import pull_request_document

    head_plan, head_desired, state, _ = planned(engine, head)
    base_desired, _ = read(engine, base)
    base_plan = make_plan(base_desired, state, engine.selection, engine.options)
    return pull_request_document(
        head_plan,
        base_plan,
        head_desired,
        base_desired,
        engine.registry.url,
        engine.selection.path,
        (base, head),
        predict(engine, head_plan),
    )
