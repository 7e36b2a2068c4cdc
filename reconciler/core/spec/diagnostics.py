"""Diagnostics: problems with the input, reported as values rather than raised."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: Severity
    rule: str
    message: str
    path: str | None = None
    line: int | None = None  # 1-based, where known

    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line else self.path

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity.value,
            "rule": self.rule,
            "message": self.message,
            "path": self.path,
            "line": self.line,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Diagnostic:
        line = data.get("line")
        path = data.get("path")
        return cls(
            severity=Severity(str(data["severity"])),
            rule=str(data["rule"]),
            message=str(data["message"]),
            path=str(path) if path is not None else None,
            line=int(line) if isinstance(line, int) else None,
        )


def error(rule: str, message: str, path: str | None = None, line: int | None = None) -> Diagnostic:
    return Diagnostic(Severity.ERROR, rule, message, path, line)


def warning(
    rule: str, message: str, path: str | None = None, line: int | None = None
) -> Diagnostic:
    return Diagnostic(Severity.WARNING, rule, message, path, line)


def info(rule: str, message: str, path: str | None = None, line: int | None = None) -> Diagnostic:
    return Diagnostic(Severity.INFO, rule, message, path, line)


def has_errors(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)
