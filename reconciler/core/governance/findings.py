"""Findings: what in a valid environment invites trouble later, with a severity.

An unpinned package freezes at whatever version is current when the image is first built;
a floating image tag (`:latest`, or none) can move under a built image. Neither is an
error, both are worth a reviewer's eye.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.desired.types import DesiredEnvironment
from reconciler.core.governance.packages import conda_packages


@dataclass(frozen=True, slots=True)
class Finding:
    name: str  # the environment
    rule: str
    severity: str  # "warning" | "info"
    message: str
    path: str | None
    line: int | None = None
    subject: str = ""  # the package or image concerned, to find its line later

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
            "line": self.line,
        }


def image_tag_problem(ref: str) -> str | None:
    """`latest` or `untagged` when a reference can move; None when pinned to a tag or digest."""
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return "untagged"
    return "latest" if last.rsplit(":", 1)[1] == "latest" else None


def _image(
    env: DesiredEnvironment, ref: str, where: str, path: str, line: int | None
) -> Finding | None:
    problem = image_tag_problem(ref)
    if problem is None:
        return None
    text = "has no tag (means :latest)" if problem == "untagged" else "uses the :latest tag"
    return Finding(
        env.name,
        f"image-{problem}",
        "warning",
        f"{where} {ref!r} {text}: it can move under a built image; pin a version tag or a digest",
        path,
        line,
        ref,
    )


def environment_findings(
    env: DesiredEnvironment, dockerfile_bases: Iterable[str] = ()
) -> list[Finding]:
    found: list[Finding] = []
    image = env.content.get("image")
    if isinstance(image, str):
        finding = _image(env, image, "image", env.source_path, env.lines.get("image"))
        if finding:
            found.append(finding)
    dockerfile = env.dockerfile_path
    for ref in dockerfile_bases:
        finding = _image(env, ref, "Dockerfile FROM", dockerfile or env.source_path, None)
        if finding:
            found.append(finding)
    conda = env.content.get("conda")
    conda_path = env.conda_path or env.source_path
    conda_line = None if env.conda_path else env.lines.get("conda_file")
    for package in conda_packages(conda if isinstance(conda, Mapping) else None):
        if package.error:
            found.append(
                Finding(
                    env.name,
                    f"{package.manager}-unparsed",
                    "info",
                    f"{package.manager} entry {package.raw!r} could not be read: {package.error}",
                    conda_path,
                    conda_line,
                    package.raw,
                )
            )
        elif not package.constrained and not package.pinned:
            found.append(
                Finding(
                    env.name,
                    f"{package.manager}-unpinned",
                    "warning",
                    f"{package.manager} package {package.name!r} has no version: it freezes at "
                    "whatever is current when the image is first built",
                    conda_path,
                    conda_line,
                    package.raw,
                )
            )
        elif not package.pinned:
            found.append(
                Finding(
                    env.name,
                    f"{package.manager}-loose-pin",
                    "info",
                    f"{package.manager} package {package.name!r} allows a range "
                    f"({package.spec}); pin one version for a reproducible image",
                    conda_path,
                    conda_line,
                    package.raw,
                )
            )
    return found
