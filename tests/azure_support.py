"""The Azure ML emulator for tests: one HTTPS server per test session, a fresh workspace
(scope) per test, and client settings that point the real SDK at it."""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.emulator.server import RunningEmulator, client_settings, start

PAGE_SIZE = 2  # small pages: every listing of a few environments follows nextLink


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    running = start(tmp_path_factory.mktemp("emulator") / "registry.db", page_size=PAGE_SIZE)
    yield running
    running.stop()


class Workspace:
    """A workspace of its own on the shared emulator, and the emulator's controls."""

    def __init__(self, running: RunningEmulator) -> None:
        self.running = running
        self.name = "ws-" + uuid.uuid4().hex[:10]
        self.url = f"azureml://subscriptions/sub/resourceGroups/rg/workspaces/{self.name}"
        self.arm_path = (
            "/subscriptions/sub/resourceGroups/rg/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{self.name}"
        )

    def control(self, method: str, what: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.running.endpoint + "_emulator/" + what, data=data, method=method
        )
        context = ssl.create_default_context(cafile=str(self.running.tls.ca))
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return json.loads(response.read())

    def fault(self, **spec: Any) -> None:
        spec["match"] = spec["match"].replace("{ws}", self.arm_path)
        self.control("POST", "faults", spec)

    def clear_faults(self) -> None:
        self.control("DELETE", "faults")

    def requests(self, contains: str = "") -> list[str]:
        lines: list[str] = self.control("GET", "requests")["requests"]
        return [line for line in lines if self.name in line and contains in line]

    def counters(self, reset: bool = False) -> dict[str, Any]:
        """The emulator's request counts (``reset``: read and start again from zero)."""
        counts: dict[str, Any] = self.control("DELETE" if reset else "GET", "counters")
        return counts

    def client(self) -> Any:
        from reconciler.adapters.azureml_client import make_client, parse_registry_url

        return make_client(parse_registry_url(self.url))


@pytest.fixture
def workspace(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    for name, value in client_settings(emulator).items():
        monkeypatch.setenv(name, value)
    # Short backoffs: retries are exercised, not waited for.
    monkeypatch.setenv("RECONCILER_AZUREML_BACKOFF", "0.01")
    monkeypatch.setenv("RECONCILER_AZUREML_RETRIES", "3")
    found = Workspace(emulator)
    yield found
    found.clear_faults()
