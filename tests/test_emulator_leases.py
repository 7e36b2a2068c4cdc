"""Blob leases on the emulator's storage, through azure-storage-blob's BlobClient and
BlobLeaseClient over real HTTPS: the states, the actions, the service's error codes and
the checks on writes to a leased blob."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator import leases
from reconciler.emulator.http import BLOB_ACCOUNT
from reconciler.emulator.leases import INFINITE, Lease, LeaseError
from reconciler.emulator.server import RunningEmulator, start
from tests.azure_support import Workspace


def blob_client(running: RunningEmulator, name: str | None = None) -> Any:
    from azure.storage.blob import BlobClient

    name = name or f"lock-{uuid.uuid4().hex[:8]}"
    url = f"{running.endpoint}{BLOB_ACCOUNT}/locks/{name}?{running.emulator.sas}"
    return BlobClient.from_blob_url(url, connection_verify=str(running.tls.ca), retry_total=0)


def error_code(caught: pytest.ExceptionInfo[Any]) -> tuple[int, str]:
    return caught.value.status_code, caught.value.error_code


def lease_state(blob: Any) -> tuple[str, str, str | None]:
    lease = blob.get_blob_properties().lease
    return lease.state, lease.status, lease.duration


def advance(workspace: Workspace, seconds: float) -> None:
    workspace.control("POST", "clock", {"advance_seconds": seconds})


@pytest.fixture
def blob(workspace: Workspace) -> Any:
    client = blob_client(workspace.running)
    client.upload_blob(b"holder: nobody\n")
    return client


def test_acquire_infinite_then_others_are_refused(workspace: Workspace, blob: Any) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobLeaseClient

    held = BlobLeaseClient(blob)
    held.acquire(lease_duration=INFINITE)
    assert uuid.UUID(held.id)
    assert lease_state(blob) == ("leased", "locked", "infinite")
    other = BlobLeaseClient(blob)
    with pytest.raises(HttpResponseError) as caught:
        other.acquire(lease_duration=15)
    assert error_code(caught) == (409, "LeaseAlreadyPresent")
    # the holder may acquire again with its own id (a new duration)
    BlobLeaseClient(blob, lease_id=held.id).acquire(lease_duration=30)
    assert lease_state(blob) == ("leased", "locked", "fixed")
    held.release()
    assert lease_state(blob) == ("available", "unlocked", None)
    other.acquire(lease_duration=INFINITE)
    assert lease_state(blob)[0] == "leased"


def test_writes_to_a_leased_blob_need_its_lease_id(workspace: Workspace, blob: Any) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobLeaseClient

    held = BlobLeaseClient(blob)
    held.acquire(lease_duration=INFINITE)
    with pytest.raises(HttpResponseError) as caught:
        blob.upload_blob(b"holder: intruder\n", overwrite=True)
    assert error_code(caught) == (412, "LeaseIdMissing")
    with pytest.raises(HttpResponseError) as caught:
        blob.set_blob_metadata({"holder": "intruder"}, lease=str(uuid.uuid4()))
    assert error_code(caught) == (412, "LeaseIdMismatchWithBlobOperation")
    blob.upload_blob(b"holder: me\n", overwrite=True, lease=held)
    blob.set_blob_metadata({"holder": "me"}, lease=held)
    assert blob.get_blob_properties().metadata == {"holder": "me"}
    assert blob.download_blob().readall() == b"holder: me\n"
    assert lease_state(blob)[0] == "leased"  # a write by the holder keeps the lease
    released = held.id
    held.release()
    with pytest.raises(HttpResponseError) as caught:
        blob.set_blob_metadata({"holder": "gone"}, lease=released)
    assert error_code(caught) == (412, "LeaseNotPresentWithBlobOperation")


def test_renew_change_and_mismatches(workspace: Workspace, blob: Any) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobLeaseClient

    held = BlobLeaseClient(blob)
    held.acquire(lease_duration=20)
    advance(workspace, 15)
    held.renew()  # 20 s again from now
    advance(workspace, 15)
    assert lease_state(blob) == ("leased", "locked", "fixed")
    stranger = BlobLeaseClient(blob, lease_id=str(uuid.uuid4()))
    for action in (stranger.renew, stranger.release):
        with pytest.raises(HttpResponseError) as caught:
            action()
        assert error_code(caught) == (409, "LeaseIdMismatchWithLeaseOperation")
    new_id = str(uuid.uuid4())
    held.change(proposed_lease_id=new_id)
    assert held.id == new_id
    BlobLeaseClient(blob, lease_id=new_id).release()
    with pytest.raises(HttpResponseError) as caught:
        held.renew()  # still new_id: released by another client object
    assert error_code(caught) == (409, "LeaseNotPresentWithLeaseOperation")


def test_an_expired_lease_can_be_taken_by_another(workspace: Workspace, blob: Any) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobLeaseClient

    crashed = BlobLeaseClient(blob)
    crashed.acquire(lease_duration=15)
    advance(workspace, 16)
    assert lease_state(blob) == ("expired", "unlocked", None)
    successor = BlobLeaseClient(blob)
    successor.acquire(lease_duration=INFINITE)
    with pytest.raises(HttpResponseError) as caught:
        crashed.renew()
    assert error_code(caught) == (409, "LeaseIdMismatchWithLeaseOperation")
    successor.release()


def test_an_expired_lease_nobody_took_is_renewed_by_its_holder(
    workspace: Workspace, blob: Any
) -> None:
    from azure.storage.blob import BlobLeaseClient

    slow = BlobLeaseClient(blob)
    slow.acquire(lease_duration=15)
    advance(workspace, 30)
    slow.renew()
    assert lease_state(blob) == ("leased", "locked", "fixed")
    slow.release()


def test_break_now_and_after_a_period(workspace: Workspace, blob: Any) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobLeaseClient

    held = BlobLeaseClient(blob)
    held.acquire(lease_duration=INFINITE)
    assert BlobLeaseClient(blob).break_lease() == 0  # infinite, no period: broken at once
    assert lease_state(blob) == ("broken", "unlocked", None)
    with pytest.raises(HttpResponseError) as caught:
        held.renew()
    assert error_code(caught) == (409, "LeaseIsBrokenAndCannotBeRenewed")

    held = BlobLeaseClient(blob)
    held.acquire(lease_duration=60)
    assert BlobLeaseClient(blob).break_lease(lease_break_period=10) == 10
    assert lease_state(blob) == ("breaking", "locked", None)
    with pytest.raises(HttpResponseError) as caught:
        BlobLeaseClient(blob).acquire(lease_duration=15)
    assert error_code(caught) == (409, "LeaseAlreadyPresent")
    with pytest.raises(HttpResponseError) as caught:
        held.change(proposed_lease_id=str(uuid.uuid4()))
    assert error_code(caught) == (409, "LeaseIsBreakingAndCannotBeChanged")
    advance(workspace, 11)
    assert lease_state(blob) == ("broken", "unlocked", None)
    BlobLeaseClient(blob).acquire(lease_duration=15)


def test_bad_requests_and_a_missing_blob(workspace: Workspace, blob: Any) -> None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.storage.blob import BlobLeaseClient

    with pytest.raises(HttpResponseError) as caught:
        BlobLeaseClient(blob).acquire(lease_duration=5)
    assert error_code(caught) == (400, "InvalidHeaderValue")
    with pytest.raises(HttpResponseError) as caught:
        BlobLeaseClient(blob).break_lease()
    assert error_code(caught) == (409, "LeaseNotPresentWithLeaseOperation")
    with pytest.raises(ResourceNotFoundError) as caught:
        BlobLeaseClient(blob_client(workspace.running, "nothing-here")).acquire()
    assert error_code(caught) == (404, "BlobNotFound")


def test_create_only_upload_and_listing_show_leases(workspace: Workspace) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobLeaseClient, ContainerClient

    name = f"lock-{uuid.uuid4().hex[:8]}"
    first = blob_client(workspace.running, name)
    first.upload_blob(b"one", overwrite=False)
    with pytest.raises(ResourceExistsError) as caught:
        blob_client(workspace.running, name).upload_blob(b"two", overwrite=False)
    assert error_code(caught) == (409, "BlobAlreadyExists")
    BlobLeaseClient(first).acquire(lease_duration=INFINITE)
    container = ContainerClient.from_container_url(
        f"{workspace.running.endpoint}{BLOB_ACCOUNT}/locks?{workspace.running.emulator.sas}",
        connection_verify=str(workspace.running.tls.ca),
    )
    listed = {b.name: b.lease for b in container.list_blobs(name_starts_with=name)}
    assert (listed[name].state, listed[name].status, listed[name].duration) == (
        "leased",
        "locked",
        "infinite",
    )
    counts = workspace.counters()["by_pattern"]
    assert counts["PUT /{account}/{container}/{blob}?comp=lease"] >= 1


def test_leases_outlive_an_emulator_restart(tmp_path: Path) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobLeaseClient

    db = tmp_path / "registry.db"
    running = start(db)
    try:
        blob = blob_client(running, "registry.lock")
        blob.upload_blob(b"x")
        BlobLeaseClient(blob).acquire(lease_duration=INFINITE)
        sas = running.emulator.sas
    finally:
        running.stop()
    again = start(db)
    again.emulator.sas = sas  # the datastore's SAS, as a client kept it
    try:
        with pytest.raises(HttpResponseError) as caught:
            BlobLeaseClient(blob_client(again, "registry.lock")).acquire(lease_duration=15)
        assert error_code(caught) == (409, "LeaseAlreadyPresent")
    finally:
        again.stop()


# -- the state table, without the wire ----------------------------------------------------

NOW = 1000.0


def states() -> Iterator[tuple[str, Lease]]:
    yield "available", Lease()
    yield "leased", Lease("A", "leased", 30, NOW + 30)
    yield "expired", Lease("A", "leased", 15, NOW - 1).at(NOW)
    yield "breaking", Lease("A", "breaking", break_at=NOW + 5)
    yield "broken", Lease("A", "broken")


def outcome(action: Any) -> str:
    try:
        result = action()
    except LeaseError as exc:
        return f"{exc.status} {exc.code}"
    return (result if isinstance(result, Lease) else result[0]).state


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("available", ["leased", "leased", "409 LeaseNotPresentWithLeaseOperation"]),
        ("leased", ["leased", "409 LeaseAlreadyPresent", "leased"]),
        ("expired", ["leased", "leased", "leased"]),
        (
            "breaking",
            [
                "409 LeaseIsBreakingAndCannotBeAcquired",
                "409 LeaseAlreadyPresent",
                "409 LeaseIsBrokenAndCannotBeRenewed",
            ],
        ),
        ("broken", ["leased", "leased", "409 LeaseIsBrokenAndCannotBeRenewed"]),
    ],
)
def test_acquire_and_renew_by_state(state: str, expected: list[str]) -> None:
    lease = dict(states())[state]
    got = [
        outcome(lambda: leases.acquire(lease, 15, "A", NOW)),
        outcome(lambda: leases.acquire(lease, 15, "B", NOW)),
        outcome(lambda: leases.renew(lease, "A", NOW)),
    ]
    assert got == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("available", ["409 LeaseNotPresentWithLeaseOperation"] * 3),
        ("leased", ["broken", "breaking", "available"]),
        ("expired", ["broken", "broken", "available"]),
        ("breaking", ["broken", "breaking", "available"]),
        ("broken", ["broken", "broken", "available"]),
    ],
)
def test_break_and_release_by_state(state: str, expected: list[str]) -> None:
    lease = dict(states())[state]
    got = [
        outcome(lambda: leases.break_lease(lease, 0, NOW)),
        outcome(lambda: leases.break_lease(lease, 3, NOW)),
        outcome(lambda: leases.release(lease, "A")),
    ]
    assert got == expected
