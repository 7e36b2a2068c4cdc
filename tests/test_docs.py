"""The documentation site cannot rot: every shell example of *Getting started* runs, as
written, in a real temporary git repository (files written from the pages' titled
blocks, output checked with `...` as a wildcard); the generated references cover every
command, option, setting and schema field; and a strict build fails on a broken link."""

from __future__ import annotations

import doctest
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docsgen import commands as cmdref
from docsgen import examples as ex
from docsgen import schemas as schemaref
from docsgen import settings as settingsref
from reconciler import settings as settings_module

PROJECT = Path(__file__).resolve().parent.parent
GETTING_STARTED = sorted((PROJECT / "docs" / "getting-started").glob("*.md"))
BIN = Path(sys.executable).parent
EMULATOR_PORT = "8443"  # the port the pages show; each run gets a free one instead
CHECK = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


class ExampleFailed(AssertionError):
    pass


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


class Session:
    """One page's shell: commands run by bash in the repository, exported variables
    carried from one command to the next, background commands stopped at the end."""

    def __init__(self, root: Path, page: Path) -> None:
        self.root = root
        self.page = page
        # a reader's shell: none of the settings, nor the cloud the SDK records in the
        # environment of this process when other tests ran it in-process
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RECONCILER_", "AZUREML_", "ARM_CLOUD_"))
        }
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env['PATH']}"
        self.env["NO_COLOR"] = "1"
        self.env["COLUMNS"] = "100"
        self.port = _free_port()
        self.background: list[subprocess.Popen[bytes]] = []
        self.env_file = root.parent / "env.out"

    def _text(self, command: str) -> str:
        return command.replace(f"127.0.0.1:{EMULATOR_PORT}", f"127.0.0.1:{self.port}").replace(
            f"--port {EMULATOR_PORT}", f"--port {self.port}"
        )

    def write(self, example: ex.FileExample) -> None:
        target = (self.root / example.path).resolve()
        assert target.is_relative_to(self.root.resolve()), example.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(example.text, encoding="utf-8")

    def run(self, example: ex.Command) -> None:
        where = f"{self.page.name}:{example.line}: $ {example.command}"
        if example.background:
            self._start(example, where)
            return
        script = f"{self._text(example.command)}\n__rc=$?\nenv -0 > {self.env_file}\nexit $__rc\n"
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        got = done.stdout + done.stderr
        if done.returncode not in (0, 2):
            raise ExampleFailed(f"{where}\nexited {done.returncode}:\n{got}")
        if example.expected.strip():
            want = self._text(example.expected).strip() + "\n"
            if not CHECK.check_output(want, got.strip() + "\n", FLAGS):
                raise ExampleFailed(f"{where}\nexpected:\n{want}\ngot:\n{got}")
        if self.env_file.exists():
            pairs = self.env_file.read_bytes().split(b"\0")
            self.env = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)

    def _start(self, example: ex.Command, where: str) -> None:
        log = (self.root.parent / "background.log").open("wb")
        process = subprocess.Popen(
            ["bash", "-c", "exec " + self._text(example.command)],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.background.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # started once it has said where it listens
            if process.poll() is not None:
                raise ExampleFailed(f"{where}\nstopped: {Path(log.name).read_text()}")
            if Path(log.name).read_text():
                time.sleep(0.2)
                return
            time.sleep(0.1)
        raise ExampleFailed(f"{where}\nsaid nothing in 60 s")

    def close(self) -> None:
        for process in self.background:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def run_page(page: Path, root: Path) -> list[ex.Example]:
    examples = ex.examples(page)
    session = Session(root, page)
    try:
        for example in examples:
            if isinstance(example, ex.FileExample):
                session.write(example)
            elif isinstance(example, ex.Command):
                session.run(example)
    finally:
        session.close()
    return examples


@pytest.mark.parametrize("page", GETTING_STARTED, ids=lambda p: p.stem)
def test_getting_started_examples_run_as_written(page: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    examples = run_page(page, root)
    ran = [e for e in examples if isinstance(e, ex.Command)]
    skipped = [e for e in examples if isinstance(e, ex.Skipped)]
    assert ran or page.stem == "azure-ml", f"{page.name}: no example runs"
    assert all(s.reason for s in skipped)
    # what is not run says why, and is the exception: installs and a real subscription
    assert {s.reason.split(" ")[0] for s in skipped} <= {"installs", "sets", "needs"}, skipped


def test_a_changed_flag_or_output_fails_the_examples(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    root = tmp_path / "repo"
    root.mkdir()
    page.write_text(
        '```yaml title="environments/a.yml"\nname: a\nimage: busybox:1.36\n```\n\n'
        "```console\n$ git init -q -b main\n$ reconciler validate\n"
        "1 environment(s) valid, 0 error(s) in 1 file(s) checked.\n```\n"
    )
    assert len(run_page(page, root)) == 3
    wrong_output = page.read_text().replace("1 environment(s)", "2 environment(s)")
    page.write_text(wrong_output)
    with pytest.raises(ExampleFailed, match="expected"):
        run_page(page, root)
    page.write_text("```console\n$ reconciler plan --no-such-flag\n```\n")
    with pytest.raises(ExampleFailed, match="exited 1"):
        run_page(page, root)


def test_examples_are_read_in_order_with_their_reasons(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- not-run: installs packages -->\n```console\n$ pip install x\n```\n\n"
        '```toml title="reconciler.toml"\npath = "envs"\n```\n\n'
        "<!-- background -->\n```console\n$ reconciler emulator\n```\n\n"
        "```console\n$ reconciler plan \\\n    --ref HEAD\nPlan: ...\n$ reconciler list\n```\n"
    )
    found = ex.examples(page)
    assert found == [
        ex.Skipped("installs packages", 2),
        ex.FileExample("reconciler.toml", 'path = "envs"\n', 6),
        ex.Command("reconciler emulator", "", 12, background=True),
        ex.Command("reconciler plan \\\n    --ref HEAD", "Plan: ...", 16),
        ex.Command("reconciler list", "", 19),
    ]


def test_command_reference_has_every_command_and_option() -> None:
    cmds = cmdref.commands()
    common = cmdref.common_options(cmds)
    parser_commands = {"validate", "plan", "apply", "drift", "build", "diff", "list", "show"}
    assert parser_commands <= {c.name for c in cmds}
    for cmd in cmds:
        page = cmdref.options_markdown(cmd, common, "index.md#common-options")
        assert cmd.usage.startswith(f"reconciler {cmd.name}")
        for option in cmd.options:
            shown = option.names[-1]
            assert shown in page or shown in cmdref.common_markdown(common), (cmd.name, shown)
        written = PROJECT / "docs" / "reference" / "commands" / f"{cmd.name}.md"
        if written.exists():
            text = written.read_text()
            assert "<!-- generated: usage -->" in text and "## Exit codes" in text, written
    plan = next(c for c in cmds if c.name == "plan")
    out = next(o for o in plan.options if o.names == ("--out",))
    assert out.metavar == "FILE" and "apply FILE" in out.help


def test_settings_reference_has_every_key_with_its_variable_and_default() -> None:
    text = settingsref.settings_markdown(cmdref.commands())
    for key in settings_module._KEYS:
        assert f"`{key}`" in text and f"`RECONCILER_{key.upper()}`" in text
    assert '| `"environments"` |' in text and "`--lock-timeout`" in text
    policy = settingsref.table_markdown(settingsref.policy_keys())
    assert "`keep_versions`" in policy and "`pinning`" in policy


def test_an_undocumented_setting_is_refused() -> None:
    from dataclasses import dataclass

    @dataclass
    class Model:
        documented: int = 1
        """Says what it is."""
        silent: int = 2

    assert settingsref.attribute_docs(Model) == {"documented": "Says what it is."}
    with pytest.raises(settingsref.UndocumentedSetting, match="`silent`"):
        settingsref._documented(Model, ["documented", "silent"], "test")


def test_schema_pages_show_every_property_of_every_schema() -> None:
    found = schemaref.schemas()
    assert {s.slug for s in found} >= {"plan", "drift-report", "evidence"}
    for schema in found:
        page = schemaref.schema_markdown(schema)
        nodes = [schema.data, *schema.data.get("$defs", {}).values()]
        for node in nodes:
            for name in node.get("properties", {}):
                assert re.search(rf"`([\w.\[\]]+\.)?{re.escape(name)}`", page), (schema.slug, name)
        for name in schema.data.get("$defs", {}):
            assert f"(#def-{name.replace('_', '-')})" in page or f"## `{name}`" in page


@pytest.fixture(scope="module")
def site_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("site-source")
    for name in ("mkdocs.yml", "docs", "docsgen", ".github"):
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy / name)
    return copy


def _build(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(root / "site")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_a_broken_link_or_an_orphan_page_fails_the_strict_build(site_copy: Path) -> None:
    page = site_copy / "docs" / "concepts" / "drift.md"
    page.write_text(page.read_text() + "\nSee [nowhere](no-such-page.md).\n")
    (site_copy / "docs" / "concepts" / "orphan.md").write_text("# Not in the navigation\n")
    done = _build(site_copy)
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr and "orphan.md" in done.stderr


def test_readme_is_a_short_landing_page_whose_links_resolve() -> None:
    readme = (PROJECT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 120
    assert lines[2:6] == [  # the two commands come first, as they always have
        "```sh",
        "scripts/reconcile   # set up, then plan and apply environments/ to the embedded "
        "registry (.reconciler/registry.db)",
        "scripts/test        # set up, then run the whole test suite (ruff, mypy, import "
        "contracts, pytest)",
        "```",
    ]
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert links, "the README links into the documentation"
    for link in links:
        if "://" not in link:
            assert (PROJECT / link).is_file(), link
