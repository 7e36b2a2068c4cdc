"""The emulator's wire: ARM ids and error bodies, paging, conflicts, auth, fault control;
checked with plain HTTPS requests and with the real SDK."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.azure_support import PAGE_SIZE, Workspace


def call(
    workspace: Workspace, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    token = workspace.running.emulator.token if token is None else token
    url = workspace.running.endpoint.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    context = ssl.create_default_context(cafile=str(workspace.running.tls.ca))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def version_body(image: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {"properties": {"image": image, "tags": tags or {}, "isArchived": False}}


def test_versions_have_arm_ids_and_conflicts_have_arm_errors(workspace: Workspace) -> None:
    path = f"{workspace.arm_path}/environments/base/versions/1"
    status, created = call(workspace, "PUT", path, version_body("busybox:1.36"))
    assert status == 201
    assert created["id"] == path and created["name"] == "1"
    assert created["properties"]["osType"] == "Linux"
    status, _ = call(workspace, "PUT", path, version_body("busybox:1.36", {"a": "b"}))
    assert status == 200
    status, error = call(workspace, "PUT", path, version_body("busybox:1.37"))
    assert status == 409 and error["error"]["code"] == "Conflict"
    status, error = call(workspace, "GET", f"{workspace.arm_path}/environments/none")
    assert status == 404 and error["error"]["code"] == "ResourceNotFound"
    status, error = call(workspace, "GET", path, token="wrong")
    assert status == 401 and error["error"]["code"] == "InvalidAuthenticationToken"


def test_listings_page_with_next_link_and_filter_archived(workspace: Workspace) -> None:
    for i in range(PAGE_SIZE + 1):
        call(
            workspace,
            "PUT",
            f"{workspace.arm_path}/environments/e{i}/versions/1",
            version_body("x"),
        )
    call(
        workspace,
        "PUT",
        f"{workspace.arm_path}/environments/e0",
        {"properties": {"isArchived": True}},
    )
    status, page = call(workspace, "GET", f"{workspace.arm_path}/environments?listViewType=All")
    assert len(page["value"]) == PAGE_SIZE and "nextLink" in page
    rest = page["nextLink"].removeprefix(workspace.running.endpoint.rstrip("/"))
    status, last = call(workspace, "GET", rest)
    assert [c["name"] for c in page["value"] + last["value"]] == ["e0", "e1", "e2"]
    assert "nextLink" not in last
    status, active = call(workspace, "GET", f"{workspace.arm_path}/environments")
    assert [c["name"] for c in active["value"]] == ["e1", "e2"]
    status, archived = call(
        workspace, "GET", f"{workspace.arm_path}/environments?listViewType=ArchivedOnly"
    )
    assert [c["name"] for c in archived["value"]] == ["e0"]


def test_sdk_latest_label_and_conflict(workspace: Workspace) -> None:
    from azure.ai.ml.entities import Environment
    from azure.core.exceptions import ResourceExistsError

    client = workspace.client()
    client.environments.create_or_update(Environment(name="base", version="2", image="a:1"))
    client.environments.create_or_update(Environment(name="base", version="10", image="a:2"))
    client.environments.create_or_update(Environment(name="base", version="3", image="a:3"))
    assert client.environments.get("base", label="latest").version == "3"  # newest created
    with pytest.raises(ResourceExistsError):
        client.environments.create_or_update(Environment(name="base", version="2", image="b"))
    # no version given: the SDK asks the container for the next one
    auto = client.environments.create_or_update(Environment(name="base", image="a:4"))
    assert auto.version == "11"


def test_fault_control_validates_and_counts(workspace: Workspace) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        workspace.control("POST", "faults", {"status": 200})
    assert caught.value.code == 400
    workspace.fault(status=500, count=1, match="GET {ws}/environments")
    path = f"{workspace.arm_path}/environments"
    assert call(workspace, "GET", path)[0] == 500
    assert call(workspace, "GET", path)[0] == 200
