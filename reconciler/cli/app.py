"""The command line's parser and its dispatch: parse arguments, load settings, wire
adapters, call the engine, render, map the outcome to an exit code."""

from __future__ import annotations

import argparse
import errno
import gc
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from reconciler import __version__
from reconciler.cli.base import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    add_report_options,
    color_enabled,
    terminal_wanted,
)

if TYPE_CHECKING:
    from reconciler.cli.replay import Answer, Watched

__all__ = [
    "EXIT_CHANGES",
    "EXIT_ERROR",
    "EXIT_OK",
    "CliError",
    "color_enabled",
    "main",
    "terminal_wanted",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse exits 2 on usage errors, which `plan` uses for "changes pending"
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


class _CommandParser(_Parser):
    """A command's parser: options may also come between its positionals."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:  # the intermixed parse calls back in here, twice
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _common_options() -> argparse.ArgumentParser:
    """Options every command accepts, anywhere after the verb, so that a command line can
    be copied and its verb changed. Where one has no meaning for a command it is ignored."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--repo", type=Path, help="repository root (default: the current git repository)"
    )
    group.add_argument("--path", help="directory of environment files (default: environments)")
    group.add_argument(
        "--registry",
        help="registry URL (default: sqlite:///.reconciler/registry.db in the repository)",
    )
    group.add_argument(
        "--image-registry",
        metavar="HOST:PORT/PREFIX",
        help="OCI registry for built images (or RECONCILER_IMAGE_REGISTRY)",
    )
    group.add_argument(
        "--target",
        action="append",
        dest="targets",
        metavar="NAME",
        help="act on this target of reconciler.toml's [targets] (repeatable; default: every "
        "target, in gate order)",
    )
    group.add_argument("--json", action="store_true", help="machine-readable output")
    group.add_argument("--no-cache", action="store_true", help="ignore and skip the caches")
    group.add_argument(
        "--no-color",
        action="store_true",
        help="plain text: no colours, tables or progress (also NO_COLOR, CI, or a pipe)",
    )
    return common


def _stage_commands(sub: Any) -> None:
    """Commands about targets as a whole (see cli/targets.py)."""
    p = sub.add_parser(
        "status", help="the promotion matrix: environments x targets; exit 2 if not in sync"
    )
    _build_options(p)
    p.add_argument("--ref", help="git's state at this ref (default: the working tree)")

    p = sub.add_parser(
        "workflows", help="write the reconcile workflow: one job per target, in gate order"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 2 if the checked-in workflow differs from the settings",
    )


def _build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build-workers", type=int, help="parallel builds (default 2)")


def _referenced_archive(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-referenced-archive",
        action="store_true",
        help="archive environments and versions that files in the repository still reference",
    )


class _Commands:
    """Adds every command with the common options: none can be left without them."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self.sub = sub
        self.common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self.sub.add_parser(name, parents=[self.common], **kwargs)
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reconciler",
        description="Keep an Azure ML environment registry in step with a git directory.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = _Commands(
        parser.add_subparsers(
            dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
        ),
        _common_options(),
    )

    p = sub.add_parser("validate", help="check environment files (all, or the given ones)")
    p.add_argument("files", nargs="*", type=Path, help="environment files to check")

    p = sub.add_parser("plan", help="show what apply would change; exit 2 if anything")
    _build_options(p)
    p.add_argument(
        "--ref", help="plan git's state at this commit, branch or tag (default: the working tree)"
    )
    p.add_argument(
        "--allow-mass-archive",
        action="store_true",
        default=None,
        help="allow a plan to archive more than the archive limit",
    )
    _referenced_archive(p)
    p.add_argument("--self-heal", action="store_true", help="plan repairs of out-of-band drift too")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="read the whole registry, not the view kept from the last run (Azure ML)",
    )
    p.add_argument("--out", metavar="FILE", help="save the plan for `apply FILE`")
    p.add_argument("--base", metavar="REF", help="pull request mode: the branch merged into")
    p.add_argument("--head", metavar="REF", help="pull request mode: the commit being merged")
    p.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write the plan as Markdown (a pull request comment; `-` for stdout)",
    )

    p = sub.add_parser("apply", help="plan and apply the changes, or apply a saved plan")
    p.add_argument(
        "plan_file", nargs="?", metavar="PLAN", help="a plan saved by `plan --out` (exactly it)"
    )
    p.add_argument("--ref", help="apply git's state at this commit, branch or tag")
    p.add_argument("--allow-mass-archive", action="store_true", default=None)
    _referenced_archive(p)
    p.add_argument("--lock-timeout", type=float, help="seconds to wait for another apply")
    _build_options(p)
    p.add_argument(
        "--require-builds",
        action="store_true",
        help="exit 1 when images cannot be built (no Docker Engine reachable)",
    )

    p.add_argument(
        "--self-heal",
        action="store_true",
        help="also repair out-of-band drift: hand edits, hand archives and restores",
    )

    p = sub.add_parser("drift", help="write the drift report; exit 2 if drift is found")
    _build_options(p)
    p.add_argument("--ref", default="HEAD", help="git's state at this ref (default: HEAD)")
    p.add_argument("--report-dir", help="where to write the report (default: drift-report/)")
    p.add_argument(
        "--fail-on",
        metavar="CLASSES",
        help="comma list of drift classes that exit 2 (pending, out-of-band, missing, "
        "unmanaged, build, base-image-moved, finding; or all, none, default)",
    )
    p.add_argument(
        "--github-annotations",
        action="store_true",
        help="print ::warning file=...,line=...:: lines for findings tied to a file",
    )

    _loop_commands(sub)
    from reconciler.cli import serve  # its options; the wiring is imported when it runs

    serve.add_parsers(sub, _loop_options, _duration)

    p = sub.add_parser("build", help="build NAME (its git version) or NAME:VERSION now")
    _build_options(p)
    p.add_argument("target", metavar="NAME[:VERSION]")
    p.add_argument("--ref", help="read build contexts from this commit (default: working tree)")

    p = sub.add_parser(
        "diff",
        help="compare NAME:V1 with NAME:V2, or NAME:V with git; exit 0 identical, 2 different",
    )
    p.add_argument("left", metavar="NAME:VERSION")
    p.add_argument(
        "right", nargs="?", metavar="NAME:VERSION", help="default: NAME as git has it (--ref)"
    )
    p.add_argument("--ref", help="compare with git at this ref (default: the working tree)")

    from reconciler.cli.consumers import add_consumer_commands

    add_consumer_commands(sub)

    p = sub.add_parser("list", help="environments in the registry")
    p.add_argument("--include-archived", action="store_true")

    p = sub.add_parser("show", help="one environment, or one version with NAME:VERSION")
    p.add_argument("target", metavar="NAME[:VERSION]")

    p = sub.add_parser("evidence", help="write an audit inventory of every environment and version")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="where evidence.json and evidence.md go"
    )

    p = sub.add_parser("history", help="versions of an environment and what happened to them")
    p.add_argument("name")

    _stage_commands(sub)

    p = sub.add_parser(
        "emulator", help="serve a local emulator of the Azure ML environment API over HTTPS"
    )
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free)")
    p.add_argument(
        "--db",
        type=Path,
        default=Path(".azureml-emulator/registry.db"),
        help="its SQLite registry; the CA, certificate and blobs go next to it "
        "(default: .azureml-emulator/registry.db)",
    )
    p.add_argument("--token", help="the bearer token clients must send (default: random)")
    p.add_argument("--page-size", type=int, default=100, help="items per listing page")
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="N",
        help="milliseconds added to every response, to imitate the service's round trip",
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="N",
        help="requests per second; beyond it, 429 with Retry-After, as the service throttles",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='inject a fault, e.g. \'{"status": 429, "count": 3, "match": "PUT */versions/*"}\'',
    )
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")

    p = sub.add_parser("completion", help="print the shell completion script for bash, zsh or fish")
    p.add_argument("shell", choices=["bash", "zsh", "fish"])
    return parser


def _loop_options(parser: argparse.ArgumentParser) -> None:
    _build_options(parser)
    parser.add_argument("--allow-mass-archive", action="store_true", default=None)
    _referenced_archive(parser)
    parser.add_argument("--self-heal", action="store_true", help="also repair out-of-band drift")
    parser.add_argument("--lock-timeout", type=float, help="seconds to wait for another apply")


def _loop_commands(sub: _Commands) -> None:
    """The long-running reconcilers: until SIGINT or SIGTERM, then exit 0."""
    p = sub.add_parser("watch", help="apply the working tree whenever environment files change")
    _loop_options(p)
    p.add_argument(
        "--debounce",
        type=int,
        default=300,
        metavar="MS",
        help="quiet time after the last file event before reconciling (default 300)",
    )

    p = sub.add_parser("reconcile", help="apply and write the drift report on a schedule")
    _loop_options(p)
    p.add_argument(
        "--interval", type=_duration, help="time between cycles: 30s, 10m, 1h (±10%% jitter)"
    )
    p.add_argument("--once", action="store_true", help="run one cycle and exit (for cron)")
    p.add_argument("--ref", help="apply git's state at this ref (default: the working tree)")
    add_report_options(p)


def _duration(text: str) -> float:
    from reconciler.watch.control import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(
    argv: Sequence[str] | None = None, answer: Answer | None = None, stderr: Watched | None = None
) -> int:
    """Run a command. ``answer``: a `plan` that may be recorded for replay, when nothing
    was written to ``stderr`` meanwhile."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.parser = parser  # `completion` is generated from it
    args.replay = (answer, stderr) if answer is not None and stderr is not None else None
    # the wiring; kept out of --help and parse errors
    from reconciler.cli import commands, serve

    wiring: Any = serve if args.command in ("serve", "notify") else commands
    collecting = gc.isenabled()
    if args.command not in LOOPS:
        # A one-shot command's objects live until it ends: the cyclic collector would
        # only scan them again and again (a fifth of a 10,000-environment apply). Loops
        # keep it: they run for days.
        gc.disable()
    try:
        return _run(args, wiring)
    finally:
        if collecting:
            gc.enable()
        commands.close_terminal(args)  # a progress display never outlives the command


def _run(args: argparse.Namespace, wiring: Any) -> int:
    from reconciler.cli import commands

    try:
        run = getattr(args, "run", None)
        if run is not None:  # a command wired by its own module (refs, bump)
            code = int(run(args))
        elif wiring is commands:  # several targets, or one registry as before
            from reconciler.cli.targets import dispatch

            code = dispatch(args)
        else:
            code = int(getattr(wiring, "run_" + args.command)(args))
        sys.stdout.flush()  # a report that cannot be written is an error, not a success
        return code
    except commands.EXPECTED_ERRORS as exc:
        commands.close_terminal(args)
        _fail(str(exc), args)
        return EXIT_ERROR
    except KeyboardInterrupt:
        commands.close_terminal(args)
        _fail("interrupted", args)
        return 130
    except OSError as exc:
        commands.close_terminal(args)
        if exc.errno not in _OUTPUT_ERRORS:
            raise
        _drop_stdout()
        where = exc.filename or "the output"
        print(f"error: cannot write {where}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR


LOOPS = frozenset({"watch", "reconcile", "serve"})  # commands that run until stopped

# Writing the report failed (a full disk, a closed pipe): what has been done stays done.
_OUTPUT_ERRORS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EPIPE, errno.EIO})


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what is still
    buffered does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _fail(message: str, args: Any) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
