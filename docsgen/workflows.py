"""The GitHub workflows reference, read from `.github/workflows/*.yml`: each workflow's
triggers, permissions and the steps it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"


def _triggers(on: Any) -> list[str]:
    if isinstance(on, str):
        return [f"`{on}`"]
    if isinstance(on, list):
        return [f"`{t}`" for t in on]
    out = []
    for event, spec in (on or {}).items():
        details = []
        if isinstance(spec, dict):
            for key in ("branches", "paths", "tags", "types"):
                if key in spec:
                    details.append(f"{key} " + ", ".join(f"`{v}`" for v in spec[key]))
        if event == "schedule" and isinstance(spec, list):
            details = [f"cron `{s['cron']}`" for s in spec if "cron" in s]
        out.append(f"`{event}`" + (f" ({'; '.join(details)})" if details else ""))
    return out


def _step(step: dict[str, Any]) -> str:
    name = step.get("name")
    if "run" in step:
        command = " && ".join(line for line in str(step["run"]).splitlines() if line.strip())
        return f"{name}: `{command}`" if name else f"`{command}`"
    return f"{name} (`{step['uses']}`)" if name else f"`{step.get('uses', '')}`"


def workflows_markdown(directory: Path = WORKFLOWS) -> str:
    lines: list[str] = []
    for path in sorted(directory.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        on = data.get(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
        lines += [f"### `{path.name}`: {data.get('name', path.stem)}", ""]
        lines.append("Runs on " + ", ".join(_triggers(on)) + ".")
        permissions = data.get("permissions")
        if isinstance(permissions, dict):
            shown = ", ".join(f"`{k}: {v}`" for k, v in permissions.items())
            lines.append(f"Permissions: {shown}.")
        lines.append("")
        for job_name, job in data.get("jobs", {}).items():
            lines += [f"Job `{job_name}`:", ""]
            lines += [f"1. {_step(s)}" for s in job.get("steps", [])]
            lines.append("")
    return "\n".join(lines)
