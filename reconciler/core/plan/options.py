"""Options that change what the planner decides (from settings and flags)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlanOptions:
    allow_mass_archive: bool = False
    archive_limit_count: int = 10
    archive_limit_fraction: float = 0.25
    # Who manages what this plan writes: usually the repository's remote URL. Archives
    # only ever touch environments stamped with the same owner.
    owner: str = ""
    # Repair out-of-band drift (hand edits, hand archives and restores, hand-made latest
    # versions) too; without it that drift is only reported.
    self_heal: bool = False
    # Retention: (environment name glob, active versions kept) pairs, later pairs winning;
    # 0 keeps every version. Older versions of managed environments are archived.
    retention: tuple[tuple[str, int], ...] = ()
    # Archive an environment or version that consumers in the repository still reference.
    allow_referenced_archive: bool = False
    # Severity of the reference rules: (environment name glob, rule, level) from `[policy]`.
    reference_levels: tuple[tuple[str, str, str], ...] = ()
    # The registry's own scope (`registries/NAME`, `subscriptions/.../workspaces/W`), to
    # tell references to it from references to other registries; None: a local registry.
    registry_scope: str | None = None

    def keep_versions(self, name: str) -> int:
        import fnmatch

        keep = 0
        for pattern, count in self.retention:
            if fnmatch.fnmatchcase(name, pattern):
                keep = count
        return keep
