"""Raw request figures of ``reconciler emulator`` over HTTPS on loopback.

Run from the project root:

    .venv/bin/python benchmarks/bench_emulator.py [--requests N] [--environments M]

It starts the emulator as its own process (as a user or CI would) and measures:

* keep-alive GET: one HTTPS connection, N sequential GETs of an environment version
  listing (throughput, and latency per request: mean, median, 95th percentile);
* the floor it is measured against: a new TLS connection per GET (what a client without
  keep-alive pays), in the same run;
* through azure-core's pipeline (the HTTP stack the SDK uses), keep-alive;
* concurrent keep-alive GETs from 16 threads;
* a full container listing of M environments (pages of 100);
* with ``--latency-ms 20``: the same keep-alive GETs, to show the added round trip.

The emulator's own request counter is read back and compared with what was sent. This
is a measurement, not a test: it exits 0 whatever the figures, and non-zero only when a
request fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BIN = Path(sys.executable).parent
RECONCILER = str(BIN / "reconciler") if (BIN / "reconciler").exists() else "reconciler"
WORKSPACE = (
    "/subscriptions/bench/resourceGroups/bench/providers/"
    "Microsoft.MachineLearningServices/workspaces/bench"
)
TARGET_GETS_PER_SECOND = 300.0


class BenchError(Exception):
    pass


@dataclass
class EmulatorProcess:
    """A running ``reconciler emulator`` and what a client needs to reach it."""

    process: subprocess.Popen[str]
    endpoint: str
    token: str
    ca: str

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.endpoint).port or 443

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context())

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def control(self, method: str, what: str) -> Any:
        connection = self.connection()
        try:
            connection.request(method, "/_emulator/" + what)
            response = connection.getresponse()
            return json.loads(response.read())
        finally:
            connection.close()


@contextmanager
def emulator(data: Path, *options: str) -> Iterator[EmulatorProcess]:
    """``reconciler emulator`` on a free port, stopped on exit."""
    process = subprocess.Popen(
        [RECONCILER, "emulator", "--db", str(data / "registry.db"), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    settings: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                settings[name] = value.strip("'")
            if "RECONCILER_AZUREML_TOKEN" in settings:
                break
        if "RECONCILER_AZUREML_TOKEN" not in settings:
            raise BenchError(f"the emulator did not start: {process.stderr.read()}")  # type: ignore[union-attr]
        yield EmulatorProcess(
            process,
            settings["RECONCILER_AZUREML_ENDPOINT"],
            settings["RECONCILER_AZUREML_TOKEN"],
            settings["REQUESTS_CA_BUNDLE"],
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


def call(
    connection: http.client.HTTPSConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any = None,
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    if response.status >= 400:
        raise BenchError(f"{method} {path}: {response.status} {payload[:200]!r}")
    return json.loads(payload or b"null")


def seed(running: EmulatorProcess, environments: int) -> None:
    connection = running.connection()
    headers = running.headers()
    for i in range(environments):
        body = {"properties": {"image": f"busybox:1.{i}", "tags": {"i": str(i)}}}
        call(connection, "PUT", f"{WORKSPACE}/environments/env-{i:05d}/versions/1", headers, body)
    connection.close()


def timed(count: int, one: Callable[[], None]) -> list[float]:
    durations = []
    for _ in range(count):
        start = time.perf_counter()
        one()
        durations.append(time.perf_counter() - start)
    return durations


def report(label: str, durations: list[float], wall: float | None = None) -> float:
    wall = sum(durations) if wall is None else wall
    rate = len(durations) / wall
    ordered = sorted(durations)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(
        f"  {label:<44} {rate:8.0f} requests/s   "
        f"mean {statistics.fmean(durations) * 1000:6.2f} ms   "
        f"median {statistics.median(durations) * 1000:6.2f} ms   p95 {p95 * 1000:6.2f} ms"
    )
    return rate


LISTING = f"{WORKSPACE}/environments/env-00000/versions?listViewType=All"


def keep_alive(running: EmulatorProcess, count: int) -> list[float]:
    connection = running.connection()
    headers = running.headers()
    call(connection, "GET", LISTING, headers)  # the handshake is not part of the figure
    durations = timed(count, lambda: call(connection, "GET", LISTING, headers))
    connection.close()
    return durations


def new_connection_each(running: EmulatorProcess, count: int) -> list[float]:
    headers = running.headers()

    def one() -> None:
        connection = running.connection()
        call(connection, "GET", LISTING, headers)
        connection.close()

    return timed(count, one)


def azure_core(running: EmulatorProcess, count: int) -> list[float]:
    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.policies import HeadersPolicy
    from azure.core.pipeline.transport import RequestsTransport
    from azure.core.rest import HttpRequest

    os.environ["REQUESTS_CA_BUNDLE"] = running.ca
    pipeline: Pipeline[Any, Any] = Pipeline(
        RequestsTransport(), policies=[HeadersPolicy(running.headers())]
    )
    url = running.endpoint.rstrip("/") + LISTING

    def one() -> None:
        response = pipeline.run(HttpRequest("GET", url)).http_response
        response.read()
        if response.status_code != 200:
            raise BenchError(f"azure-core GET: {response.status_code}")

    with pipeline:
        one()
        return timed(count, one)


def concurrent(running: EmulatorProcess, count: int, threads: int) -> tuple[list[float], float]:
    durations: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            mine = keep_alive(running, count // threads)
        except BaseException as exc:  # reported after the join
            errors.append(exc)
            return
        with lock:
            durations.extend(mine)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise BenchError(f"concurrent GETs failed: {errors[0]}")
    return durations, wall


def full_listing(running: EmulatorProcess) -> tuple[int, int, float]:
    connection = running.connection()
    headers = running.headers()
    path: str | None = f"{WORKSPACE}/environments?listViewType=All"
    pages = items = 0
    start = time.perf_counter()
    while path:
        page = call(connection, "GET", path, headers)
        pages += 1
        items += len(page["value"])
        link = page.get("nextLink")
        path = None if not link else link.removeprefix(running.endpoint.rstrip("/"))
    connection.close()
    return pages, items, time.perf_counter() - start


def measure(data: Path, args: argparse.Namespace) -> None:
    print(
        f"emulator benchmark: {args.requests} GETs per figure, {args.environments} "
        f"environments, {os.cpu_count()} CPUs"
    )
    with emulator(data / "plain") as running:
        seed(running, args.environments)
        running.control("DELETE", "counters")
        print("GET of a version listing over HTTPS on loopback:")
        floor = report("new TLS connection per request (floor)", new_connection_each(running, 200))
        rate = report("keep-alive, one connection", keep_alive(running, args.requests))
        report("keep-alive through azure-core's pipeline", azure_core(running, args.requests))
        durations, wall = concurrent(running, args.requests, 16)
        report("keep-alive, 16 connections at once", durations, wall)
        counted = running.control("GET", "counters")
        sent = 200 + 2 * (args.requests + 1) + 16 * (args.requests // 16 + 1)
        print(f"  requests counted by the emulator: {counted['total']} (sent {sent})")
        pages, items, seconds = full_listing(running)
        print(
            f"container listing: {items} environments in {pages} pages, {seconds:.2f} s "
            f"({seconds / pages * 1000:.1f} ms per page)"
        )
    with emulator(data / "latency", "--latency-ms", "20") as running:
        seed(running, 1)
        print("with --latency-ms 20:")
        report("keep-alive, one connection", keep_alive(running, min(args.requests, 200)))
    verdict = "met" if rate >= TARGET_GETS_PER_SECOND else "NOT met"
    print(
        f"keep-alive GET: {rate:.0f} requests/s, {rate / floor:.1f}x the new-connection "
        f"floor; goal >= {TARGET_GETS_PER_SECOND:.0f} requests/s: {verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--environments", type=int, default=2000)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="reconciler-bench-emulator-"))
    try:
        measure(data, args)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
