"""Governance policy: what every environment must satisfy, as data, and its evaluation.

A policy is read from the `[policy]` table of the settings file; per-environment overrides
(`[policy.environments."GLOB"]`) replace single rules for the environments whose name
matches, later tables winning. Approved exceptions (`[[policy.exceptions]]`) name who
approved a deviation, why and until when: while in force, the violation is shown as
`info` with the approval; once expired, the violation stands and says so. Everything
here is pure (today's date is passed in).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from reconciler.core.governance.packages import Package, conda_packages, requirements_file
from reconciler.core.spec.diagnostics import Diagnostic, Severity

if TYPE_CHECKING:  # settings import this module: keep it light
    from reconciler.core.desired.types import DesiredEnvironment

RULES = ("required-tags", "allowed-images", "pinning", "forbidden-packages", "os-type")
PINNING_LEVELS = ("off", "warning", "error")
# Severity of the consumer reference rules (see governance/pins.py): `ref_stale = "error"`.
REFERENCE_KEYS = {
    "ref_stale": "ref-stale",
    "ref_unknown": "ref-unknown",
    "ref_archived": "ref-archived",
    "ref_floating": "ref-floating",
    "ref_inline_environment": "ref-inline-environment",
    "ref_unreadable": "ref-unreadable",
}
REFERENCE_LEVELS = ("off", "info", "warning", "error")


class PolicyError(ValueError):
    """The policy table is malformed; the message names the key."""


@dataclass(frozen=True, slots=True)
class Rules:
    """One level of rules; None means "not set here" (inherited, or no rule)."""

    required_tags: tuple[str, ...] | None = None
    """User tags every environment must carry, with a non-empty value."""
    allowed_images: tuple[str, ...] | None = None
    """Prefixes of the image references allowed, as written or as Docker resolves them
    (`busybox:1.36` is `docker.io/library/busybox:1.36`); checked for `image:` and for the `FROM`
    lines of a build context's Dockerfile.
    """
    pinning: str | None = None
    """Whether every conda and pip package must name one version: `off`, `warning` or `error`."""
    forbidden_packages: tuple[str, ...] | None = None
    """Packages no environment may install: `NAME`, `pip:NAME` or `conda:NAME`."""
    allowed_os_types: tuple[str, ...] | None = None
    """Allowed `os_type` values: `linux`, `windows`."""
    keep_versions: int | None = None
    """Retention: active versions kept per managed environment; older ones are archived (0 keeps
    all).
    """
    ref_stale: str | None = None
    """Severity of `ref-stale` (a consumer pins an older version than the one git makes latest):
    `off`, `info`, `warning` (default) or `error`.
    """
    ref_unknown: str | None = None
    """Severity of `ref-unknown` (a consumer names an environment or version neither git nor the
    registry has): `off`, `info`, `warning` (default) or `error`.
    """
    ref_archived: str | None = None
    """Severity of `ref-archived` (a consumer pins a version archived in the registry): `off`,
    `info`, `warning` (default) or `error`.
    """
    ref_floating: str | None = None
    """Severity of `ref-floating` (a consumer follows `@latest`): `off`, `info` (default),
    `warning` or `error`.
    """
    ref_inline_environment: str | None = None
    """Severity of `ref-inline-environment` (an anonymous environment defined in a job or
    component): `off`, `info` (default), `warning` or `error`.
    """
    ref_unreadable: str | None = None
    """Severity of `ref-unreadable` (a consumer file that cannot be read: too large, binary,
    invalid YAML, a symlink out of the repository): `off`, `info`, `warning` (default) or `error`.
    """

    def over(self, base: Rules) -> Rules:
        """These rules where set, ``base`` elsewhere."""
        changes = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(base, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True, slots=True)
class PolicyException:
    environment: str
    """Glob over the environment names the exception covers."""
    rule: str
    """The rule it waives: `required-tags`, `allowed-images`, `pinning`, `forbidden-packages` or
    `os-type`.
    """
    approved_by: str
    """Who approved the deviation."""
    reason: str
    """Why, for the audit evidence."""
    expires: date
    """Last day (UTC) the exception is in force: a TOML date or `"YYYY-MM-DD"`."""

    def in_force(self, today: date) -> bool:
        return today <= self.expires

    def covers(self, name: str, rule: str) -> bool:
        return self.rule == rule and fnmatch.fnmatchcase(name, self.environment)

    def to_dict(self, today: date) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "rule": self.rule,
            "approved_by": self.approved_by,
            "reason": self.reason,
            "expires": self.expires.isoformat(),
            "in_force": self.in_force(today),
        }


@dataclass(frozen=True, slots=True)
class Policy:
    rules: Rules = Rules()
    overrides: tuple[tuple[str, Rules], ...] = ()  # (name glob, rules), in file order
    exceptions: tuple[PolicyException, ...] = ()

    def rules_for(self, name: str) -> Rules:
        rules = self.rules
        for pattern, override in self.overrides:
            if fnmatch.fnmatchcase(name, pattern):
                rules = override.over(rules)
        return rules

    def exceptions_for(self, name: str) -> list[PolicyException]:
        return [e for e in self.exceptions if fnmatch.fnmatchcase(name, e.environment)]

    def retention(self) -> tuple[tuple[str, int], ...]:
        """(name glob, versions kept) pairs for the planner, later pairs winning."""
        out: list[tuple[str, int]] = []
        if self.rules.keep_versions is not None:
            out.append(("*", self.rules.keep_versions))
        out += [(p, r.keep_versions) for p, r in self.overrides if r.keep_versions is not None]
        return tuple(out)

    def reference_levels(self) -> tuple[tuple[str, str, str], ...]:
        """(name glob, rule, level) triples for the reference rules, later ones winning."""
        out: list[tuple[str, str, str]] = []
        for pattern, rules in (("*", self.rules), *self.overrides):
            for key, rule in REFERENCE_KEYS.items():
                level = getattr(rules, key)
                if level is not None:
                    out.append((pattern, rule, level))
        return tuple(out)

    @property
    def needs_dockerfiles(self) -> bool:
        return any(r.allowed_images is not None for r in self._levels())

    @property
    def needs_requirements(self) -> bool:
        return any(
            r.forbidden_packages is not None or r.pinning not in (None, "off")
            for r in self._levels()
        )

    def _levels(self) -> list[Rules]:
        return [self.rules, *(r for _, r in self.overrides)]


# ---------------------------------------------------------------------------- parsing


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"`{key}`: expected a list of non-empty strings")
    return tuple(value)


def _rules(table: Mapping[str, Any], where: str) -> Rules:
    known = {f.name for f in fields(Rules)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{where}.{key}"
        if key not in known:
            raise PolicyError(f"unknown policy key `{full}` (known: {', '.join(sorted(known))})")
        if key == "pinning":
            if value not in PINNING_LEVELS:
                raise PolicyError(f"`{full}`: expected one of {', '.join(PINNING_LEVELS)}")
            values[key] = value
        elif key in REFERENCE_KEYS:
            if value not in REFERENCE_LEVELS:
                raise PolicyError(f"`{full}`: expected one of {', '.join(REFERENCE_LEVELS)}")
            values[key] = value
        elif key == "keep_versions":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyError(f"`{full}`: expected a whole number >= 0 (0 keeps all)")
            values[key] = value
        elif key == "allowed_os_types":
            values[key] = tuple(v.lower() for v in _strings(value, full))
            if bad := [v for v in values[key] if v not in ("linux", "windows")]:
                raise PolicyError(f"`{full}`: {bad[0]!r} is not linux or windows")
        elif key == "forbidden_packages":
            values[key] = tuple(_strings(value, full))
            for entry in values[key]:
                manager, _, name = entry.rpartition(":")
                if manager not in ("", "pip", "conda") or not name:
                    raise PolicyError(f"`{full}`: {entry!r}: expected NAME, pip:NAME or conda:NAME")
        else:
            values[key] = _strings(value, full)
    return Rules(**values)


def _exception(raw: Any, index: int) -> PolicyException:
    where = f"policy.exceptions[{index}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"`{where}`: expected a table")
    required = ("environment", "rule", "approved_by", "reason", "expires")
    missing = [k for k in required if k not in raw]
    if missing:
        raise PolicyError(
            f"`{where}`: missing {', '.join(missing)} (an exception records "
            "which environments, which rule, who approved it, why and until when)"
        )
    extra = sorted(set(raw) - set(required))
    if extra:
        raise PolicyError(f"`{where}`: unknown key `{extra[0]}`")
    for key in ("environment", "approved_by", "reason"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise PolicyError(f"`{where}.{key}`: expected a non-empty string")
    if raw["rule"] not in RULES:
        raise PolicyError(f"`{where}.rule`: {raw['rule']!r} is not one of {', '.join(RULES)}")
    expires = raw["expires"]
    if isinstance(expires, str):
        try:
            expires = date.fromisoformat(expires)
        except ValueError:
            raise PolicyError(
                f"`{where}.expires`: {expires!r} is not a date (YYYY-MM-DD)"
            ) from None
    if not isinstance(expires, date) or hasattr(expires, "hour"):
        raise PolicyError(f"`{where}.expires`: expected a date (YYYY-MM-DD)")
    return PolicyException(
        raw["environment"], raw["rule"], raw["approved_by"], raw["reason"], expires
    )


def parse_policy(table: Any) -> Policy:
    """The `[policy]` table of the settings file as a Policy; PolicyError if malformed."""
    if not isinstance(table, Mapping):
        raise PolicyError("`policy` must be a table")
    base = {k: v for k, v in table.items() if k not in ("environments", "exceptions")}
    overrides = table.get("environments", {})
    if not isinstance(overrides, Mapping):
        raise PolicyError('`policy.environments` must be a table of `"GLOB" = { rules }`')
    parsed: list[tuple[str, Rules]] = []
    for pattern, rules in overrides.items():
        if not isinstance(rules, Mapping):
            raise PolicyError(f'`policy.environments."{pattern}"`: expected a table of rules')
        parsed.append((pattern, _rules(rules, f'policy.environments."{pattern}"')))
    exceptions = table.get("exceptions", [])
    if not isinstance(exceptions, list):
        raise PolicyError(
            "`policy.exceptions`: expected an array of tables ([[policy.exceptions]])"
        )
    return Policy(
        _rules(base, "policy"),
        tuple(parsed),
        tuple(_exception(raw, i) for i, raw in enumerate(exceptions)),
    )


# ---------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class Violation:
    name: str
    rule: str  # one of RULES
    severity: Severity
    message: str
    path: str | None
    line: int | None = None
    subject: str = ""  # text to find the line by, when ``line`` is unknown

    def diagnostic(self, lines: Mapping[tuple[str, str], int]) -> Diagnostic:
        line = self.line
        if line is None and self.path is not None and self.subject:
            line = lines.get((self.path, self.subject))
        return Diagnostic(self.severity, f"policy-{self.rule}", self.message, self.path, line)


def normalized_image(ref: str) -> str:
    """`busybox:1.36` -> `docker.io/library/busybox:1.36`, as Docker resolves it."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


def _image_allowed(ref: str, prefixes: Iterable[str]) -> bool:
    full = normalized_image(ref)
    return any(ref.startswith(p) or full.startswith(p) for p in prefixes)


def _policy_pinned(package: Package) -> bool:
    """Names one version: exact (`==1.2.3`, a build string, a URL at a ref) or conda's
    `=1.2.3` (any build of that version); ranges and no version do not."""
    if package.pinned:
        return True
    spec = package.spec
    return package.manager == "conda" and spec.endswith(".*") and spec[:1].isalnum()


def _forbidden(package: Package, entries: Iterable[str]) -> str | None:
    from packaging.utils import canonicalize_name

    for entry in entries:
        manager, _, name = entry.rpartition(":")
        if manager and manager != package.manager:
            continue
        if canonicalize_name(name) == canonicalize_name(package.name):
            return entry
    return None


class _Evaluation:
    def __init__(self, policy: Policy, env: DesiredEnvironment, today: date) -> None:
        self.env, self.today = env, today
        self.rules = policy.rules_for(env.name)
        self.exceptions = policy.exceptions_for(env.name)
        self.found: list[Violation] = []

    def add(
        self,
        rule: str,
        severity: Severity,
        message: str,
        path: str | None,
        line: int | None = None,
        subject: str = "",
    ) -> None:
        for exception in self.exceptions:
            if exception.rule != rule:
                continue
            if exception.in_force(self.today):
                message += (
                    f" (exception in force: approved by {exception.approved_by} until "
                    f"{exception.expires.isoformat()}: {exception.reason})"
                )
                severity = Severity.INFO
            else:
                message += (
                    f" (the exception approved by {exception.approved_by} expired on "
                    f"{exception.expires.isoformat()})"
                )
            break
        self.found.append(Violation(self.env.name, rule, severity, message, path, line, subject))

    def run(
        self, dockerfile_bases: Iterable[str], requirements: Mapping[str, str]
    ) -> list[Violation]:
        env, rules = self.env, self.rules
        where = env.source_path
        if rules.required_tags:
            missing = [t for t in rules.required_tags if not str(env.tags.get(t, "")).strip()]
            if missing:
                self.add(
                    "required-tags",
                    Severity.ERROR,
                    f"{env.name}: required tag(s) missing: {', '.join(missing)}",
                    where,
                    env.lines.get("tags") or env.line,
                )
        if rules.allowed_os_types is not None:
            os_type = str(env.content.get("os_type") or "linux").lower()
            if os_type not in rules.allowed_os_types:
                self.add(
                    "os-type",
                    Severity.ERROR,
                    f"{env.name}: os_type {os_type!r} is not allowed "
                    f"(allowed: {', '.join(rules.allowed_os_types)})",
                    where,
                    env.lines.get("os_type") or env.line,
                )
        if rules.allowed_images is not None:
            self._images(dockerfile_bases)
        self._packages(requirements)
        return self.found

    def _images(self, dockerfile_bases: Iterable[str]) -> None:
        env, allowed = self.env, self.rules.allowed_images or ()
        shown = ", ".join(allowed) or "none"
        image = env.content.get("image")
        if isinstance(image, str) and not _image_allowed(image, allowed):
            self.add(
                "allowed-images",
                Severity.ERROR,
                f"{env.name}: base image {image!r} is not from an allowed registry ({shown})",
                env.source_path,
                env.lines.get("image") or env.line,
            )
        dockerfile = env.dockerfile_path
        for ref in dockerfile_bases:
            if not _image_allowed(ref, allowed):
                self.add(
                    "allowed-images",
                    Severity.ERROR,
                    f"{env.name}: Dockerfile FROM {ref!r} is not from an allowed registry "
                    f"({shown})",
                    (dockerfile or env.source_path).lstrip("/"),
                    None,
                    ref,
                )

    def _packages(self, requirements: Mapping[str, str]) -> None:
        env, rules = self.env, self.rules
        pinning = rules.pinning or "off"
        forbidden = rules.forbidden_packages or ()
        if pinning == "off" and not forbidden:
            return
        conda = env.content.get("conda")
        sources: list[tuple[str, int | None, list[Package]]] = []
        if isinstance(conda, Mapping):
            line = None if env.conda_path else env.lines.get("conda_file")
            sources.append((env.conda_path or env.source_path, line, conda_packages(conda)))
        for path in sorted(requirements):
            full = f"{env.build_root}/{path}".lstrip("/") if env.build_root else path
            sources.append((full, None, requirements_file(requirements[path])[0]))
        severity = Severity.ERROR if pinning == "error" else Severity.WARNING
        for path, line, packages in sources:
            for package in packages:
                if package.error:
                    continue  # reported as a finding already
                entry = _forbidden(package, forbidden)
                if entry is not None:
                    self.add(
                        "forbidden-packages",
                        Severity.ERROR,
                        f"{env.name}: {package.manager} package {package.name!r} is forbidden "
                        f"by policy ({entry})",
                        path,
                        line,
                        package.raw,
                    )
                if pinning != "off" and not _policy_pinned(package):
                    what = f"allows a range ({package.spec})" if package.spec else "has no version"
                    self.add(
                        "pinning",
                        severity,
                        f"{env.name}: {package.manager} package {package.name!r} {what}; the "
                        "policy requires one version",
                        path,
                        line,
                        package.raw,
                    )


def evaluate(
    policy: Policy,
    env: DesiredEnvironment,
    today: date,
    dockerfile_bases: Iterable[str] = (),
    requirements: Mapping[str, str] | None = None,
) -> list[Violation]:
    """Every violation of ``policy`` by ``env``, exceptions applied. ``requirements``: the
    texts of the build context's requirements*.txt files by path inside the context."""
    return _Evaluation(policy, env, today).run(dockerfile_bases, requirements or {})


def is_policy_diagnostic(diagnostic: Diagnostic) -> bool:
    return diagnostic.rule.startswith("policy-")
