"""The environment file format (Azure ML v2 environment YAML) and its validation.

``check_environment`` turns one parsed YAML document into an ``EnvironmentFile`` or a
list of diagnostics. Paths are not resolved here; see ``desired.py``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reconciler.core.spec import diagnostics as diag
from reconciler.core.spec.diagnostics import Diagnostic
from reconciler.core.spec.kinds import STAMP_PREFIX
from reconciler.core.spec.yamldoc import YamlDocument

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$")
REGISTRY_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")
# The service documents no pattern for versions; these can never work, as the version is a
# URL path segment (`.../versions/<version>`) and the tail of a `name:version` reference.
VERSION_FORBIDDEN = re.compile(r"[/\\?#%\s]|[\x00-\x1f\x7f]")
MAX_VERSION_LENGTH = 64
RESERVED_PREFIXES = ("azureml-", "microsoft")
READ_ONLY_FIELDS = ("id", "creation_context", "latest_version", "intellectual_property")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Route(_Strict):
    port: int = Field(ge=1, le=65535)
    path: str

    @field_validator("port", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):  # lax mode would read `port: true` as port 1
            raise ValueError("must be a port number, not a boolean")
        return value


class InferenceConfig(_Strict):
    liveness_route: Route
    readiness_route: Route
    scoring_route: Route


class BuildSpec(_Strict):
    path: str = Field(min_length=1)
    dockerfile_path: str = "Dockerfile"


class EnvironmentFile(_Strict):
    """One environment file, as written (paths still relative to the file)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: str | None = Field(default=None, alias="$schema")
    name: str
    version: str | None = None
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    conda_file: str | dict[str, Any] | None = None
    build: BuildSpec | None = None
    os_type: str | None = None
    inference_config: InferenceConfig | None = None
    datastore: str | None = None

    @field_validator("os_type")
    @classmethod
    def _os_type(cls, value: str | None) -> str | None:
        if value is None:
            return None
        lowered = value.lower()
        if lowered not in ("linux", "windows"):
            raise ValueError("must be linux or windows")
        return lowered


def _legacy_forms(data: dict[str, Any], doc: YamlDocument, path: str) -> list[Diagnostic]:
    """Old preview formats: say what the current format expects, not just 'unknown field'."""
    out: list[Diagnostic] = []
    line = doc.lines.get
    if "docker" in data:
        docker = data["docker"]
        hint = "write the base image as a top-level `image: <image>`"
        if isinstance(docker, dict) and "build" in docker:
            hint = "write a Docker build context as `build: {path: <dir>, dockerfile_path: ...}`"
        out.append(
            diag.error(
                "legacy-docker",
                f"`docker:` is the preview environment format; {hint}",
                path,
                line("docker"),
            )
        )
    if "path" in data:
        out.append(
            diag.error(
                "legacy-path",
                "top-level `path:` is the preview format; a Docker build context is "
                "`build: {path: <dir>}`, a conda file is `conda_file: <file>`",
                path,
                line("path"),
            )
        )
    if "conda" in data:
        out.append(
            diag.error(
                "legacy-conda",
                "`conda:` is not a field; the conda specification is `conda_file: <file>`",
                path,
                line("conda"),
            )
        )
    build = data.get("build")
    if isinstance(build, dict) and "local_path" in build:
        out.append(
            diag.error(
                "legacy-build-local-path",
                "`build.local_path` is the preview format; use `build.path: <dir>`",
                path,
                line("build.local_path") or line("build"),
            )
        )
    conda = data.get("conda_file")
    if isinstance(conda, str) and conda.startswith("file:"):
        out.append(
            diag.error(
                "legacy-file-prefix",
                f"`conda_file: {conda}` uses the preview `file:` prefix; "
                f"write `conda_file: {conda[5:]}`",
                path,
                line("conda_file"),
            )
        )
    return out


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict"})


def _pydantic_diagnostics(exc: ValidationError, doc: YamlDocument, path: str) -> list[Diagnostic]:
    by_field: dict[str, list[str]] = {}
    lines: dict[str, int | None] = {}
    for err in exc.errors(include_url=False):
        # union members appear in loc as type names; keep the field path only
        fields = [
            str(part)
            for part in err["loc"]
            if str(part) not in _TYPE_NAMES and "[" not in str(part)
        ]
        dotted = ".".join(fields) or "(document)"
        line = None
        for depth in range(len(fields), 0, -1):
            line = doc.lines.get(".".join(fields[:depth]))
            if line:
                break
        if err["type"] == "extra_forbidden":
            message = f"unknown field `{dotted}`"
        elif err["type"] == "missing":
            message = f"missing required field `{dotted}`"
        else:
            message = err["msg"][0].lower() + err["msg"][1:]
        by_field.setdefault(dotted, [])
        if message not in by_field[dotted]:
            by_field[dotted].append(message)
        lines[dotted] = line
    out = []
    for dotted, messages in by_field.items():
        if messages[0].startswith(("unknown field", "missing required")):
            text = messages[0]
        else:
            # a union (path or mapping) fails once per member: join them into one sentence
            text = f"`{dotted}`: " + " or ".join(messages)
        out.append(diag.error("schema", text, path, lines[dotted]))
    return out


def check_name(name: str, path: str, line: int | None) -> list[Diagnostic]:
    if name.lower().startswith(RESERVED_PREFIXES):
        return [
            diag.error(
                "reserved-name",
                f"name {name!r}: the prefixes `AzureML-` and `Microsoft` are reserved for "
                "curated environments",
                path,
                line,
            )
        ]
    if NAME_PATTERN.match(name):
        return []
    if REGISTRY_NAME_PATTERN.match(name):
        return [
            diag.warning(
                "name-dot",
                f"name {name!r} contains `.`: accepted by Azure ML registries, rejected by "
                "workspaces",
                path,
                line,
            )
        ]
    return [
        diag.error(
            "name-pattern",
            f"name {name!r} does not match the service pattern "
            "^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$ (letters, digits, `-`, `_`; at most 255)",
            path,
            line,
        )
    ]


def check_version(version: str, path: str, line: int | None) -> list[Diagnostic]:
    if len(version) > MAX_VERSION_LENGTH or VERSION_FORBIDDEN.search(version):
        return [
            diag.error(
                "version-pattern",
                f"version {version!r} may not hold `/`, `\\`, `?`, `#`, `%`, spaces or control "
                f"characters, and has at most {MAX_VERSION_LENGTH} characters",
                path,
                line,
            )
        ]
    if VERSION_PATTERN.match(version):
        return []
    return [
        diag.warning(
            "version-chars",
            f"version {version!r} holds characters other than letters, digits and `._:+-` "
            "(or does not start with a letter or digit): is it a template placeholder?",
            path,
            line,
        )
    ]


def check_environment(
    doc: YamlDocument, path: str
) -> tuple[EnvironmentFile | None, list[Diagnostic]]:
    """Validate one parsed environment document. Returns the model or None, and diagnostics."""
    data = doc.data
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        return None, [
            diag.error("not-a-mapping", f"an environment file must be a mapping, got {kind}", path)
        ]
    found: list[Diagnostic] = []
    for key, line in doc.duplicate_keys:
        found.append(diag.error("duplicate-key", f"key `{key}` appears more than once", path, line))
    for key, line in doc.nested:
        found.append(
            diag.error("tag-value", f"`{key}` must be a string, not a mapping or list", path, line)
        )
    for key, written, read in doc.coerced:
        found.append(
            diag.warning(
                "yaml-coercion",
                f"`{key}: {written}` is unquoted; YAML 1.1 would read it as {read}. Read as "
                f"written ({written!r}); quote it to make that explicit",
                path,
                doc.lines.get(key),
            )
        )
    legacy = _legacy_forms(data, doc, path)
    if legacy:
        return None, found + legacy
    clean = {k: v for k, v in data.items() if k not in READ_ONLY_FIELDS}
    if clean.get("version") == "":
        clean["version"] = None
    try:
        env = EnvironmentFile.model_validate(clean)
    except ValidationError as exc:
        return None, found + _pydantic_diagnostics(exc, doc, path)

    where = doc.lines.get
    found.extend(check_name(env.name, path, where("name")))
    if env.version is not None:
        found.extend(check_version(env.version, path, where("version")))
    if env.image is None and env.build is None:
        found.append(
            diag.error(
                "image-or-build",
                "an environment needs exactly one of `image` and `build` (a Docker image or "
                "a Docker build context)",
                path,
                where("conda_file") or where("name"),
            )
        )
    if env.image is not None and env.build is not None:
        found.append(
            diag.error(
                "image-or-build",
                "`image` and `build` are exclusive; keep one",
                path,
                where("build"),
            )
        )
    if env.conda_file is not None and env.build is not None:
        found.append(
            diag.error(
                "conda-with-build",
                "`conda_file` is not allowed with `build`: install the packages in the "
                "Dockerfile of the build context",
                path,
                where("conda_file"),
            )
        )
    for key in env.tags:
        if key.startswith(STAMP_PREFIX):
            found.append(
                diag.error(
                    "reserved-tag",
                    f"tag `{key}`: the `{STAMP_PREFIX}` prefix is reserved for ownership stamps",
                    path,
                    where(f"tags.{key}"),
                )
            )
    if diag.has_errors(found):
        return None, found
    return env, found
