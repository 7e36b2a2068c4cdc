"""Runs the image builds that a reconcile calls for, and records them on the versions.

One build per content digest: versions sharing content share the image. Cache hits are
decided from one tag listing of the OCI registry plus the local engine. Failed builds keep
their version, are marked `failed` with their log tail, and are tried again by a later
reconcile once their backoff has passed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.build.jobs import (
    BuildJob,
    BuildOutcome,
    BuildRecord,
    BuildStatus,
    BuildTarget,
    image_tag,
    job_bases,
    job_for,
    next_attempt,
    tail,
)
from reconciler.core.spec.secrets import mask_text
from reconciler.ports import (
    Builder,
    BuildError,
    BuilderUnavailable,
    Progress,
    QuietProgress,
    Registry,
)

if TYPE_CHECKING:
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


class BuildRunner:
    def __init__(
        self,
        builder: Builder | None,
        registry: Registry,
        log_dir: Path,
        workers: int = 2,
        report: Callable[[str], None] | None = None,
        reason_unconfigured: str = "no image registry configured "
        "(--image-registry or RECONCILER_IMAGE_REGISTRY)",
        resolve_base: Callable[[str], str | None] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.builder = builder
        self.registry = registry
        self.log_dir = log_dir
        self.workers = max(1, workers)
        self.report = report or (lambda line: None)
        self.reason_unconfigured = reason_unconfigured
        self.resolve_base = resolve_base  # base image reference -> digest in its registry
        self.progress = progress or QuietProgress()  # one row per image while it builds
        self._write_lock = threading.Lock()  # one registry connection, many build threads
        self._known: dict[tuple[str, str], BuildRecord] = {}

    # -- decisions ------------------------------------------------------------------

    def pending(
        self, targets: Iterable[BuildTarget], force: bool = False
    ) -> tuple[list[BuildTarget], list[BuildRecord]]:
        """Targets that need work, and failed ones still waiting for their backoff."""
        records = self.registry.build_records()
        self._known = records
        now = _iso(_now())
        todo, waiting = [], []
        for target in targets:
            record = records.get((target.name, target.version))
            if record is not None and record.digest == target.digest and not force:
                if record.status is BuildStatus.SUCCEEDED:
                    continue
                if (
                    record.status is BuildStatus.FAILED
                    and record.next_attempt_at
                    and record.next_attempt_at > now
                ):
                    waiting.append(record)
                    continue
            todo.append(target)
        return todo, waiting

    def predict(self, digests: Iterable[str]) -> dict[str, str]:
        """For plan: `cache hit` or `will build` per digest (no builds, one lookup)."""
        wanted = set(digests)
        if not wanted:
            return {}
        if self.builder is None:
            return {}  # builds are not configured: nothing to predict
        built = {
            r.digest
            for r in self.registry.build_records().values()
            if r.status is BuildStatus.SUCCEEDED
        }
        try:
            known = self.builder.known_tags()
        except BuildError:
            known = set()
            if not built:
                return dict.fromkeys(wanted, "unknown (image registry unreachable)")
        return {
            d: "cache hit" if d in built or d.removeprefix("sha256:") in known else "will build"
            for d in wanted
        }

    # -- running --------------------------------------------------------------------

    def run(
        self,
        targets: Iterable[BuildTarget],
        read_blob: Callable[[str, BuildTarget], bytes],
        force: bool = False,
    ) -> BuildOutcome:
        outcome = BuildOutcome()
        todo, outcome.waiting = self.pending(targets, force)
        for record in outcome.waiting:
            self.report(
                f"build {record.name}:{record.version}: failed before; next attempt "
                f"after {record.next_attempt_at}"
            )
        if not todo:
            return outcome
        problem = self.reason_unconfigured if self.builder is None else self.builder.unavailable()
        if problem is not None:
            outcome.unavailable = problem
            changed = []
            for target in todo:
                record = BuildRecord(
                    target.name,
                    target.version,
                    target.digest,
                    BuildStatus.NOT_BUILT,
                    message=problem,
                )
                if self._known.get((target.name, target.version)) != record:
                    changed.append(record)  # a second run without Docker writes nothing
                outcome.not_built.append(record)
            self._save_all(changed)
            if self.builder is not None:  # not configured: the summary says so, once
                self.report(f"builds skipped for {len(todo)} version(s): {problem}")
            return outcome
        builder = self.builder
        assert builder is not None
        groups: dict[str, list[BuildTarget]] = {}
        for target in todo:
            groups.setdefault(target.digest, []).append(target)
        try:
            known = builder.known_tags()
        except BuildError as exc:
            self.report(f"image lookup failed, building without it: {exc}")
            known = set()
        jobs: list[tuple[BuildJob, list[BuildTarget]]] = []
        # The pushed digest of a cache hit: from a record of the same content if there is
        # one, else one HEAD request per image (the registry answers those one by one).
        recorded = {
            image_tag(r.digest): r.image
            for r in self._known.values()
            if r.status is BuildStatus.SUCCEEDED and r.image
        }
        recorded_bases = {
            r.digest: r.bases for r in self._known.values() if r.status is BuildStatus.SUCCEEDED
        }
        hits = [] if force else [image_tag(d) for d in groups if image_tag(d) in known]
        images: dict[str, str | None] = {t: recorded[t] for t in hits if t in recorded}
        unresolved = [t for t in hits if t not in images]
        if unresolved:
            images.update(builder.pushed_images(unresolved))
        queued: list[BuildRecord] = []
        with self.registry.batch():  # one transaction for many records (cache hits)
            for digest, group in groups.items():
                job = job_for(digest, group[0].content)
                image = images.get(job.tag)
                if image is None:  # not in the OCI registry (maybe only in the engine): build
                    jobs.append((job, group))
                    queued.extend(
                        BuildRecord(t.name, t.version, digest, BuildStatus.QUEUED) for t in group
                    )
                    continue
                for target in group:
                    record = BuildRecord(
                        target.name,
                        target.version,
                        digest,
                        BuildStatus.SUCCEEDED,
                        image=image,
                        cache_hit=True,
                        ended_at=_iso(_now()),
                        message="image already in the registry",
                        bases=recorded_bases.get(digest, {}),
                    )
                    self._save(record)
                    outcome.cache_hits.append(record)
            for record in queued:
                self._save(record)
        if outcome.cache_hits:
            self.report(f"{len(outcome.cache_hits)} version(s): cache hit, nothing to build")
        if not jobs:
            return outcome
        with ThreadPoolExecutor(self.workers) as pool:
            results = list(
                pool.map(lambda item: self._build(builder, item[0], item[1], read_blob), jobs)
            )
        for records, ran in results:
            outcome.builds_run += ran
            for record in records:
                (
                    outcome.built if record.status is BuildStatus.SUCCEEDED else outcome.failed
                ).append(record)
        return outcome

    def _build(
        self,
        builder: Builder,
        job: BuildJob,
        group: list[BuildTarget],
        read_blob: Callable[[str, BuildTarget], bytes],
    ) -> tuple[list[BuildRecord], int]:
        records = self._known  # as they were before this run queued anything
        attempts = (
            max(
                (
                    r.attempts
                    for t in group
                    if (r := records.get((t.name, t.version))) is not None
                    and r.digest == job.digest
                ),
                default=0,
            )
            + 1
        )
        started = _now()
        for target in group:
            self._save(
                BuildRecord(
                    target.name,
                    target.version,
                    job.digest,
                    BuildStatus.BUILDING,
                    started_at=_iso(started),
                    attempts=attempts,
                )
            )
        # A line per event, or a row per image on a progress display that shows them.
        lines_wanted = isinstance(self.progress, QuietProgress)
        if lines_wanted:
            self.report(f"build {_names(group)}: building {job.kind} image {job.tag[:12]}")
        row = f"build:{job.tag}"
        self.progress.start(row, f"{_names(group)}: building {job.tag[:12]}")
        lines: list[str] = []
        log_path = self.log_dir / f"{job.tag[:16]}.log"
        clock = time.monotonic()
        image: str | None = None
        failure: str | None = None
        bases: dict[str, str | None] = {}
        retry_now = False

        def read(blob: str) -> bytes:
            return read_blob(blob, group[0])

        def log(line: str) -> None:
            lines.append(mask_text(line))  # build output echoes pip and conda URLs
            self.progress.advance(row, lines[-1])

        try:
            bases = self._resolve_bases(job_bases(job, read))
            image = builder.build(job, read, log)
        except (BuildError, OSError) as exc:
            failure = mask_text(str(exc))
            log(f"FAILED: {exc}")
            # the engine, not the environment, failed: the next reconcile tries again
            retry_now = isinstance(exc, BuilderUnavailable)
        ended = _now()
        finished = BuildRecord(
            "",
            "",
            job.digest,
            BuildStatus.SUCCEEDED,
            image=image,
            started_at=_iso(started),
            ended_at=_iso(ended),
            log_tail=tail("\n".join(lines)),
            log_path=self._write_log(log_path, lines),
            attempts=attempts,
            bases=bases,
        )
        if failure is None:
            outcome_text = f"succeeded in {time.monotonic() - clock:.1f}s: {image}"
        else:
            finished = replace(
                finished,
                status=BuildStatus.FAILED,
                message=failure,
                next_attempt_at=None if retry_now else _iso(next_attempt(attempts, ended)),
            )
            outcome_text = f"FAILED after {time.monotonic() - clock:.1f}s: {failure}"
        records_out = [replace(finished, name=t.name, version=t.version) for t in group]
        if lines_wanted:
            self.report(f"build {_names(group)}: {outcome_text}")
        self.progress.finish(row, f"{_names(group)}: {'built' if failure is None else 'FAILED'}")
        for record in records_out:
            self._save(record)
        return records_out, 1

    def _resolve_bases(self, refs: list[str]) -> dict[str, str | None]:
        """What each base tag points to now, recorded so a later move is seen as drift."""
        out: dict[str, str | None] = {}
        for ref in refs:
            try:
                out[ref] = self.resolve_base(ref) if self.resolve_base else None
            except BuildError:
                out[ref] = None  # registry not reachable: unknown, not an error
        return out

    def _write_log(self, path: Path, lines: list[str]) -> str | None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        except OSError:
            return None
        return str(path)

    def _save(self, record: BuildRecord) -> None:
        if self._concurrency > 1:  # a backend that takes concurrent calls (Azure ML)
            self.registry.set_build_record(record)
            return
        with self._write_lock:
            self.registry.set_build_record(record)

    @property
    def _concurrency(self) -> int:
        return max(1, self.registry.write_concurrency)

    def _save_all(self, records: list[BuildRecord]) -> None:
        if self._concurrency < 2 or len(records) < 2:
            with self._write_lock:
                self.registry.set_build_records(records)  # one write, not one per record
            return
        with ThreadPoolExecutor(min(self._concurrency, len(records))) as pool:
            list(pool.map(self._save, records))


def _names(group: list[BuildTarget]) -> str:
    shown = ", ".join(f"{t.name}:{t.version}" for t in group[:3])
    return shown + (f" (+{len(group) - 3})" if len(group) > 3 else "")
