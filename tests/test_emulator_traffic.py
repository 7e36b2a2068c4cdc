"""The emulator's imitation of the service's cost: request counters, added latency and
throttling with 429 and Retry-After, over real HTTPS (plain requests and azure-core)."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator.counters import path_pattern
from reconciler.emulator.server import RunningEmulator, start
from tests.azure_support import Workspace

ARM = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices"
WORKSPACE = f"{ARM}/workspaces/w"


def connect(running: RunningEmulator) -> http.client.HTTPSConnection:
    port = int(running.endpoint.rstrip("/").rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(running.tls.ca))
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)


def send(
    connection: http.client.HTTPSConnection,
    running: RunningEmulator,
    method: str,
    path: str,
    body: Any = None,
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {running.emulator.token}"}
    data = None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    headers = dict(response.getheaders())
    if "json" not in headers.get("Content-Type", "json"):
        return response.status, headers, payload.decode()  # storage answers XML
    return response.status, headers, json.loads(payload or b"null")


@pytest.fixture
def own_emulator(tmp_path: Path) -> Iterator[Any]:
    """A factory of emulators with options of their own, stopped after the test."""
    started: list[RunningEmulator] = []

    def make(**options: Any) -> RunningEmulator:
        running = start(tmp_path / f"e{len(started)}" / "registry.db", **options)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


def test_counters_count_by_method_pattern_status_and_scope(workspace: Workspace) -> None:
    from tests.test_emulator import call, version_body

    workspace.counters(reset=True)
    for name in ("a", "b"):
        path = f"{workspace.arm_path}/environments/{name}/versions/1"
        assert call(workspace, "PUT", path, version_body("busybox:1.36"))[0] == 201
    for name in ("a", "b", "c"):
        call(workspace, "GET", f"{workspace.arm_path}/environments/{name}/versions")
    counts = workspace.counters()
    assert counts["total"] == 5
    assert counts["by_method"] == {"PUT": 2, "GET": 3}
    prefix = "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices"
    assert counts["by_pattern"] == {
        f"PUT {prefix}/workspaces/{{}}/environments/{{}}/versions/{{}}": 2,
        f"GET {prefix}/workspaces/{{}}/environments/{{}}/versions": 3,
    }
    assert counts["by_status"] == {"201": 2, "200": 2, "404": 1}
    assert counts["by_scope"] == {workspace.name: 5}
    # control calls are not counted; a reset starts from zero
    assert workspace.counters(reset=True)["total"] == 5
    assert workspace.counters()["total"] == 0


def test_path_patterns_of_registries_and_blobs() -> None:
    registry = "/mferp/managementfrontend/subscriptions/x/resourceGroups/y/providers/"
    registry += "Microsoft.MachineLearningServices/registries/reg/environments/e/versions"
    assert path_pattern(registry, {}) == (
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices"
        "/registries/{}/environments/{}/versions"
    )
    assert path_pattern("/store/box/locks/x.lock", {"comp": "lease", "sig": "s"}) == (
        "/{account}/{container}/{blob}?comp=lease"
    )


def test_latency_is_added_to_every_response(own_emulator: Any) -> None:
    running = own_emulator(latency_ms=150)
    connection = connect(running)
    send(connection, running, "GET", f"{WORKSPACE}/environments")  # the handshake
    started = time.perf_counter()
    status, _, _ = send(connection, running, "GET", f"{WORKSPACE}/environments")
    missing, _, _ = send(connection, running, "GET", f"{WORKSPACE}/environments/none")
    elapsed = time.perf_counter() - started
    assert (status, missing) == (200, 404)
    assert elapsed >= 0.3  # a lower bound: the sleep is the emulator's, not the machine's
    assert running.emulator._counters()["latency_ms"] == 150


def test_rate_limit_answers_429_with_retry_after(own_emulator: Any) -> None:
    running = own_emulator(rate_limit=5)
    connection = connect(running)
    answers = [send(connection, running, "GET", f"{WORKSPACE}/environments") for _ in range(12)]
    statuses = [status for status, _, _ in answers]
    assert statuses[:5] == [200] * 5  # a second's budget passes at once
    refused = [(headers, body) for status, headers, body in answers if status == 429]
    assert len(refused) >= 5
    for headers, body in refused:
        assert int(headers["Retry-After"]) >= 1
        assert body["error"]["code"] == "TooManyRequests"
    counts = running.emulator._counters()
    assert counts["throttled"] == len(refused)
    assert counts["by_status"]["429"] == len(refused)
    # waiting as told gets through
    time.sleep(int(refused[-1][0]["Retry-After"]))
    assert send(connection, running, "GET", f"{WORKSPACE}/environments")[0] == 200


def test_azure_core_retry_policy_rides_out_throttling(own_emulator: Any) -> None:
    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.policies import HeadersPolicy, RetryPolicy
    from azure.core.pipeline.transport import RequestsTransport
    from azure.core.rest import HttpRequest

    running = own_emulator(rate_limit=4)
    transport = RequestsTransport(connection_verify=str(running.tls.ca))
    headers = HeadersPolicy({"Authorization": f"Bearer {running.emulator.token}"})
    pipeline: Pipeline[Any, Any] = Pipeline(transport, policies=[headers, RetryPolicy()])
    url = running.endpoint.rstrip("/") + f"{WORKSPACE}/environments"
    with pipeline:
        responses = [pipeline.run(HttpRequest("GET", url)).http_response for _ in range(8)]
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * 8
    counts = running.emulator._counters()
    assert counts["throttled"] >= 1
    assert counts["by_status"]["200"] == 8


def test_storage_calls_are_not_throttled(own_emulator: Any) -> None:
    running = own_emulator(rate_limit=1)
    connection = connect(running)
    path = f"/emulatorstore/box/x?{running.emulator.sas}"
    answers = [send(connection, running, "GET", path) for _ in range(5)]
    assert [status for status, _, _ in answers] == [404] * 5  # never 429
    assert all("<Code>BlobNotFound</Code>" in body for _, _, body in answers)


def test_emulator_command_takes_latency_and_rate_limit(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "emulator",
            "--db",
            str(tmp_path / "r.db"),
            "--latency-ms",
            "7",
            "--rate-limit",
            "50",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        endpoint = lines[0].split(" on ", 1)[1].split(" ", 1)[0]
        port = int(endpoint.rstrip("/").rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        connection.request("GET", "/_emulator/counters")
        counts = json.loads(connection.getresponse().read())
    finally:
        process.terminate()
        process.wait(10)
    assert lines[1].strip() == "Added latency: 7 ms; rate limit: 50 requests/s"
    assert counts["latency_ms"] == 7 and counts["rate_limit"] == 50
    arguments = ["emulator", "--db", str(tmp_path / "b.db"), "--rate-limit", "0"]
    bad = subprocess.run(
        [sys.executable, "-m", "reconciler", *arguments], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode != 0 and "--rate-limit 0" in bad.stderr
