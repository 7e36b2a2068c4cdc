"""The MkDocs hook that generates the reference (wired in mkdocs.yml under `hooks:`).

- every sub-command of `reconciler.cli.app.build_parser()` gets a page under
  `reference/commands/`: the hand-written one if it exists, else a generated one, and both
  get their usage and options from the parser (marker `<!-- generated: usage -->`);
- every shipped JSON Schema gets a page under `reference/documents/` and is published next
  to it;
- markers in any page are replaced with generated Markdown (see `_replacement`).

A marker that names nothing, or a hand-written page for a command the parser no longer
has, is a warning, so `mkdocs build --strict` fails rather than publish a stale page.
"""

from __future__ import annotations

import logging
import posixpath
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

# mkdocs puts only this file's directory on sys.path while loading a hook
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from mkdocs.config.defaults import MkDocsConfig  # noqa: E402
from mkdocs.structure.files import File, Files  # noqa: E402
from mkdocs.structure.pages import Page  # noqa: E402

from docsgen import commands as cmdref  # noqa: E402
from docsgen import samples as sample_runs  # noqa: E402
from docsgen import schemas as schemaref  # noqa: E402
from docsgen import settings as settingsref  # noqa: E402
from docsgen import workflows as workflowref  # noqa: E402

log = logging.getLogger("mkdocs.plugins.reconciler")

COMMANDS_DIR = "reference/commands"
DOCUMENTS_DIR = "reference/documents"
# a marker stands on a line of its own: `<!-- generated: KIND [ARGUMENT] -->`
MARKER = re.compile(r"^<!--\s*generated:\s*([a-z-]+)(?:\s+([^\s>]+))?\s*-->[ \t]*$", re.M)


@cache
def _commands() -> tuple[cmdref.Command, ...]:
    return tuple(cmdref.commands())


@cache
def _samples() -> dict[str, sample_runs.Sample]:
    return sample_runs.collect()


def _command_uri(name: str) -> str:
    return f"{COMMANDS_DIR}/{name}.md"


def _expand(nav: Any, title: str, children: list[dict[str, str]]) -> bool:
    """Replace the nav entry `{title: INDEX}` with a section: INDEX, then children."""
    if isinstance(nav, list):
        for i, item in enumerate(nav):
            if isinstance(item, dict) and list(item) == [title] and isinstance(item[title], str):
                nav[i] = {title: [item[title], *children]}
                return True
            if _expand(item, title, children):
                return True
    elif isinstance(nav, dict):
        return any(_expand(v, title, children) for v in nav.values())
    return False


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    _commands.cache_clear()
    _samples.cache_clear()
    nav = config.nav
    commands = [{f"reconciler {c.name}": _command_uri(c.name)} for c in _commands()]
    documents = [{f"{s.slug}.json": f"{DOCUMENTS_DIR}/{s.slug}.md"} for s in schemaref.schemas()]
    for title, children in (("Commands", commands), ("JSON documents", documents)):
        if not _expand(nav, title, children):
            log.warning("mkdocs.yml: the nav has no `%s` entry for the generated pages", title)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    names = {c.name for c in _commands()}
    for c in _commands():
        uri = _command_uri(c.name)
        if files.get_file_from_path(uri) is None:
            content = f"# reconciler {c.name}\n\n{c.summary[:1].upper()}{c.summary[1:]}.\n\n"
            content += "<!-- generated: usage -->\n"
            files.append(File.generated(config, uri, content=content))
    for f in list(files):
        stem = Path(f.src_uri).stem
        if f.src_uri.startswith(COMMANDS_DIR + "/") and stem not in names | {"index"}:
            log.warning("%s: the command line has no command `%s`", f.src_uri, stem)
    for s in schemaref.schemas():
        page = f"{DOCUMENTS_DIR}/{s.slug}.md"
        if files.get_file_from_path(page) is None:
            content = f"# {s.slug}.json\n\n<!-- generated: schema {s.slug} -->\n"
            files.append(File.generated(config, page, content=content))
        raw = f"{DOCUMENTS_DIR}/{s.file.name}"
        files.append(File.generated(config, raw, content=s.file.read_bytes()))
    return files


def _link(page: Path, target: str) -> str:
    """A link from a page to a file of the command reference, relative as MkDocs wants."""
    return posixpath.relpath(f"{COMMANDS_DIR}/{target}", page.parent.as_posix() or ".")


def _replacement(kind: str, arg: str | None, page: Page) -> str | None:
    cmds = list(_commands())
    common = cmdref.common_options(cmds)
    here = Path(page.file.src_uri)
    if kind == "usage":
        name = arg or here.stem
        found = [c for c in cmds if c.name == name]
        if not found:
            return None
        return cmdref.options_markdown(found[0], common, _link(here, "index.md#common-options"))
    if kind == "commands":
        return cmdref.index_markdown(cmds, {c.name: _link(here, f"{c.name}.md") for c in cmds})
    if kind == "common-options":
        return cmdref.common_markdown(common)
    if kind == "sample":
        sample = _samples().get(arg or here.stem)
        return sample.markdown() if sample else None
    if kind == "settings":
        return settingsref.settings_markdown(cmds)
    if kind == "targets":
        return settingsref.table_markdown(settingsref.target_keys())
    if kind == "policy":
        return settingsref.table_markdown(settingsref.policy_keys())
    if kind == "policy-exceptions":
        return settingsref.table_markdown(settingsref.exception_keys())
    if kind == "workflows":
        return workflowref.workflows_markdown()
    if kind == "schema":
        found_schema = [s for s in schemaref.schemas() if s.slug == (arg or here.stem)]
        return schemaref.schema_markdown(found_schema[0]) if found_schema else None
    return None


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    def replace(match: re.Match[str]) -> str:
        try:
            text = _replacement(match.group(1), match.group(2), page)
        except (settingsref.UndocumentedSetting, sample_runs.SampleError) as exc:
            log.error("%s: %s", page.file.src_uri, exc)
            return ""
        if text is None:
            log.warning("%s: %s names nothing to generate", page.file.src_uri, match.group(0))
            return ""
        return text

    return MARKER.sub(replace, markdown)
