"""Saved plans: `plan --out FILE`, then `apply FILE` applies exactly what was reviewed.

Like Terraform's plan files, a saved plan carries everything apply writes (content, tags,
description of every version) plus what it was made against: the registry's state
fingerprint and the source commit. Apply refuses it when either has moved since. The
file holds credentials as written in git (apply needs them): keep it as private as the
repository.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from reconciler.core.plan.errors import BadPlanFile, StalePlan
from reconciler.core.plan.types import Action, Change, Plan, Reason
from reconciler.core.spec.digest import canonical_json, content_digest
from reconciler.core.spec.model import RegistryState, VersionWrite

SAVED_FORMAT_VERSION = 1


def state_fingerprint(state: RegistryState) -> str:
    """A hash of everything a plan depends on in the registry: containers, versions, their
    digests, archive flags, descriptions and tags. Works for backends without a token."""
    view = [
        [
            name,
            container.archived,
            [
                [v.version, v.effective_digest, v.archived, v.description, dict(v.tags)]
                for v in container.versions
            ],
        ]
        for name, container in sorted(state.containers.items())
    ]
    return hashlib.sha256(canonical_json(view).encode()).hexdigest()


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: a registry may hand content over as a read-only or
    lazily decoded mapping, which a JSON encoder does not know."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _write(write: VersionWrite | None) -> dict[str, Any] | None:
    if write is None:
        return None
    return {
        "content": plain(write.content),
        "digest": write.digest,
        "description": write.description,
        "tags": dict(write.tags),
        "datastore": write.datastore,
    }


def saved_plan(
    plan: Plan,
    document: Mapping[str, Any],
    state: RegistryState,
    registry_url: str,
    ref: str | None,
) -> dict[str, Any]:
    """The file `plan --out` writes: the reviewed document and the changes to apply."""
    return {
        "format_version": SAVED_FORMAT_VERSION,
        "kind": "saved-plan",
        "plan": document,  # what was reviewed (credentials masked)
        "apply": {
            "registry_url": registry_url,
            "registry_fingerprint": state_fingerprint(state),
            "ref": ref,
            "commit": plan.commit,
            "changes": [
                {
                    "name": c.name,
                    "action": c.action.value,
                    "reason": c.why,
                    "version": c.version,
                    "previous_version": c.previous_version,
                    "source_path": c.source_path,
                    "stamp_version": c.stamp_version,
                    "write": _write(c.write),
                }
                for c in plan.changes
                if c.deferred is None  # held by the promotion gate: not applied
            ],
        },
    }


def _change(raw: Mapping[str, Any], where: str) -> Change:
    try:
        write = raw.get("write")
        version_write = None
        if write is not None:
            version_write = VersionWrite(
                write["content"],
                write["digest"],
                write.get("description"),
                {str(k): str(v) for k, v in write["tags"].items()},
                write.get("datastore"),
            )
            if content_digest(dict(version_write.content)) != version_write.digest:
                raise BadPlanFile(
                    f"{where}: the content of {raw['name']} does not match its digest; "
                    "the file was changed after it was saved"
                )
        reason, detail, self_heal = Reason.parse(str(raw["reason"]))
        return Change(
            name=str(raw["name"]),
            action=Action(raw["action"]),
            reason=reason,
            detail=tuple(detail.items()),
            self_heal=self_heal,
            version=raw.get("version"),
            previous_version=raw.get("previous_version"),
            write=version_write,
            source_path=raw.get("source_path"),
            stamp_version=raw.get("stamp_version"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadPlanFile(f"{where}: not a valid saved plan ({exc!r})") from None


def load_saved_plan(data: Any, where: str) -> tuple[Mapping[str, Any], list[Change]]:
    """The `apply` section and its changes; BadPlanFile when the file is not a saved plan."""
    if not isinstance(data, Mapping) or data.get("kind") != "saved-plan":
        raise BadPlanFile(f"{where}: not a saved plan (write one with `reconciler plan --out`)")
    if data.get("format_version") != SAVED_FORMAT_VERSION:
        raise BadPlanFile(
            f"{where}: saved plan format {data.get('format_version')!r}, this reconciler "
            f"reads {SAVED_FORMAT_VERSION}"
        )
    section = data.get("apply")
    if not isinstance(section, Mapping) or not isinstance(section.get("changes"), list):
        raise BadPlanFile(f"{where}: the saved plan has no changes section")
    return section, [_change(raw, where) for raw in section["changes"]]


def check_fresh(
    section: Mapping[str, Any],
    registry_url: str,
    state: RegistryState,
    commit_now: str | None,
) -> None:
    """Raise StalePlan unless the plan was made for this registry, in this state, at this
    commit."""
    if section.get("registry_url") != registry_url:
        raise StalePlan(
            f"the plan was made for the registry {section.get('registry_url')}, not {registry_url}"
        )
    if section.get("registry_fingerprint") != state_fingerprint(state):
        raise StalePlan(
            "the registry changed since the plan was made; make a new plan and review it again"
        )
    if section.get("commit") != commit_now:
        ref = section.get("ref") or "HEAD"
        raise StalePlan(
            f"the source moved since the plan was made ({ref} was "
            f"{str(section.get('commit'))[:12]}, is {str(commit_now)[:12]}); make a new plan"
        )
