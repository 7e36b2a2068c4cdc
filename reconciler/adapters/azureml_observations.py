"""What was last read of an Azure ML registry, kept between runs (incremental observation).

One JSON file per registry (URL and endpoint) under ``.reconciler/azureml/``: for each
container, the container listing's view of it (latest and next version, archive flag,
last-modified time) and its versions as read then. The next plan lists containers (one
call per page) and re-reads the versions of only those whose view changed.

The view does not change when someone edits a version's description or tags, or archives
a single version, by hand: an entry can therefore hide such out-of-band drift until the
next full read (``plan --refresh``, ``drift``, ``apply --self-heal``), exactly as
Terraform's state hides what only its refresh sees. It never causes a wrong write: every
write reads the version it writes first (see azureml.AzureMLRegistry.put_version).

The file is a cache: unreadable, of another format or another registry, it is ignored;
it is replaced atomically, so a killed run leaves the old one or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.adapters.azureml_wire import (
    ContainerView,
    version_from_dict,
    version_to_dict,
)
from reconciler.core.spec.model import RegisteredVersion

FORMAT = 1


@dataclass
class Observed:
    """One container as last read: its listing view (None once we wrote to it ourselves:
    see ``adoptable``) and its versions, oldest first."""

    view: ContainerView | None
    versions: tuple[RegisteredVersion, ...]
    written: bool = False  # written by this process since it was read


@dataclass
class Observations:
    containers: dict[str, Observed] = field(default_factory=dict)

    def unchanged(self, view: ContainerView) -> bool:
        """The kept versions of this container are as good as a fresh read."""
        kept = self.containers.get(view.name)
        if kept is None:
            return False
        if kept.view is not None and not kept.written:
            return kept.view == view
        return adoptable(kept, view)


def adoptable(kept: Observed, view: ContainerView) -> bool:
    """A container this process wrote to: what it holds now is what was read plus what
    was written, if the listing agrees on what a write moves (newest version, next
    number); anything else, someone else's version in between, means a re-read. The
    container's archive flag is never kept: it comes from the listing itself."""
    if not kept.versions:
        return False
    newest = kept.versions[-1]
    numbers = [int(v.version) for v in kept.versions if v.version.isascii() and v.version.isdigit()]
    expected_next = str(max(numbers, default=0) + 1)
    return view.latest_version == newest.version and view.next_version in (None, expected_next)


def store_key(url: str, endpoint: str) -> str:
    text = f"{url.lower().rstrip('/')}\n{endpoint.lower().rstrip('/')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ObservationStore:
    def __init__(self, directory: Path, url: str, endpoint: str) -> None:
        self.directory = directory
        self.url = url
        self.endpoint = endpoint
        self.path = directory / f"{store_key(url, endpoint)}.json"

    def load(self) -> Observations:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("url") != self.url:
                return Observations()
            if data.get("endpoint") != self.endpoint:
                return Observations()
            containers = {}
            for name, entry in data["containers"].items():
                view = entry.get("view")
                containers[str(name)] = Observed(
                    ContainerView.from_dict(view) if view is not None else None,
                    tuple(version_from_dict(v) for v in entry["versions"]),
                )
            return Observations(containers)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return Observations()  # a cache: anything unreadable is as if absent

    def save(self, observations: Observations) -> None:
        data: dict[str, Any] = {
            "format": FORMAT,
            "url": self.url,
            "endpoint": self.endpoint,
            "containers": {
                name: {
                    # written since read: the next run checks the listing agrees with
                    # what was written (see adoptable)
                    "view": None if o.view is None or o.written else o.view.to_dict(),
                    "versions": [version_to_dict(v) for v in o.versions],
                }
                for name, o in sorted(observations.containers.items())
            },
        }
        with contextlib.suppress(OSError):  # a cache that cannot be written costs time only
            self._ensure_directory()
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
            os.replace(temporary, self.path)

    def _ensure_directory(self) -> None:
        from reconciler.adapters.state_dir import own_directory

        own_directory(self.directory.parent)  # `.reconciler/`: local state, never committed
        own_directory(self.directory)
