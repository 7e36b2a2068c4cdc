"""The registry lock across machines: a lease on a blob in the workspace's default
storage, as Terraform's azurerm backend locks its state.

- acquire: the lock blob (``reconciler-locks/<registry key>.lock`` in the default
  datastore's container) is created if missing, then leased for LEASE_SECONDS; a lease
  held by someone else (``409 LeaseAlreadyPresent``) is waited for, up to the timeout;
- the holder (user, host, process, CI run, since when) is written into the blob's
  metadata under the lease, so a refused run says who holds it;
- a thread renews the lease every RENEW_EVERY seconds while the run lasts: a run that
  crashes stops renewing, and its lease expires after at most LEASE_SECONDS, after which
  the next run acquires it (no manual unlock, unlike a stale lock file);
- release at the end clears the holder and frees the blob at once. A lease that could
  not be renewed (lost) fails the run at release: another run may have written meanwhile.

Storage is reached with azure-storage-blob and the SAS (or the credential) the SDK's
own upload of build contexts uses.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from reconciler.ports import LockTimeout, RegistryError

T = TypeVar("T")


class AzureMLRegistry(Protocol):
    """What the lease needs of the Azure ML registry (adapters/azureml.py imports this
    module, so it is described here rather than imported)."""

    url: str

    @property
    def target(self) -> Any: ...

    @property
    def client(self) -> Any: ...

    def _call(self, function: Callable[[], T], what: str) -> T: ...


LEASE_SECONDS = 60  # the longest fixed lease storage grants
RENEW_EVERY = 15.0
LOCK_PREFIX = "reconciler-locks/"
HOLDER_KEY = "reconcilerholder"  # metadata names are C# identifiers
SINCE_KEY = "reconcilersince"


def holder_text(environ: dict[str, str] | None = None) -> str:
    """Who this run is, for a refused run's message."""
    env = os.environ if environ is None else environ
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    text = f"{user}@{socket.gethostname()} pid {os.getpid()}"
    if env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        text += (
            f", GitHub Actions run {server}/{env.get('GITHUB_REPOSITORY', '?')}/actions/runs/"
            f"{env['GITHUB_RUN_ID']}"
        )
    return text


class BlobLease:
    """One lease on one blob (a BlobClient of azure-storage-blob)."""

    def __init__(
        self,
        blob: Any,
        what: str,
        lease_seconds: int = LEASE_SECONDS,
        renew_every: float = RENEW_EVERY,
        holder: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.blob = blob
        self.what = what
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.holder = holder or holder_text()
        self._sleep = sleep
        self._lease: Any = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost: str | None = None  # why renewing failed, if it did
        self.renewals = 0

    def _ensure_blob(self) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        try:
            self.blob.upload_blob(
                b"reconciler registry lock: the holder is in this blob's metadata\n",
                overwrite=False,
            )
        except ResourceExistsError:
            pass  # made by an earlier run
        except HttpResponseError as exc:
            if exc.status_code != 412:  # leased now: it exists
                raise

    def current_holder(self) -> str:
        try:
            metadata = self.blob.get_blob_properties().metadata or {}
        except Exception:  # only for the message: the refusal is what matters
            return "another reconciler"
        holder = metadata.get(HOLDER_KEY)
        since = metadata.get(SINCE_KEY)
        if not holder:
            return "another reconciler"
        return f"{holder}, since {since}" if since else holder

    def acquire(self, timeout: float) -> None:
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import BlobLeaseClient

        self._ensure_blob()
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            lease = BlobLeaseClient(self.blob)
            try:
                lease.acquire(lease_duration=self.lease_seconds)
                break
            except HttpResponseError as exc:
                if exc.status_code != 409:
                    raise
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{self.what} is locked by {self.current_holder()} (a lease on "
                        f"{self.blob.url.split('?')[0]}); waited {timeout:g}s. Try again when "
                        "it finishes, or raise --lock-timeout; a crashed holder's lease "
                        f"expires within {self.lease_seconds}s"
                    ) from None
                self._sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)
        self._lease = lease
        since = datetime.now(UTC).isoformat(timespec="seconds")
        self.blob.set_blob_metadata({HOLDER_KEY: self.holder, SINCE_KEY: since}, lease=lease)
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="lease-renewal", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self._lease.renew()
                self.renewals += 1
            except Exception as exc:  # reported at release: the run goes on meanwhile
                self.lost = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                return

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        lease, self._lease = self._lease, None
        if lease is None:
            return
        if self.lost is None:
            with contextlib.suppress(Exception):  # the release below frees it anyway
                self.blob.set_blob_metadata({}, lease=lease)
            with contextlib.suppress(Exception):  # an unreleased lease expires by itself
                lease.release()
            return
        raise RegistryError(
            f"{self.what}: the lease was lost while the run lasted ({self.lost}); another "
            "run may have written meanwhile: plan again"
        )


def workspace_blob(registry: AzureMLRegistry) -> Any:
    """The lock blob in the workspace's default datastore, through the SDK's own
    datastore look-up (SAS from ``listSecrets``, or the credential for identity access)."""
    from azure.ai.ml._artifacts._artifact_utilities import get_datastore_info
    from azure.storage.blob import BlobClient

    datastores = registry.client.datastores
    default = registry._call(datastores.get_default, "find the default datastore")
    info = registry._call(
        lambda: get_datastore_info(datastores, str(default.name)), "read the datastore"
    )
    return BlobClient(
        info["account_url"],
        info["container_name"],
        f"{LOCK_PREFIX}{registry.target.key}.lock",
        credential=info["credential"],
        retry_total=3,
    )


@contextlib.contextmanager
def lease_lock(registry: AzureMLRegistry, timeout: float) -> Iterator[None]:
    """``Registry.lock`` for a workspace: the lease held for the whole block."""
    from azure.core.exceptions import AzureError

    what = f"registry {registry.url}"
    try:
        lease = BlobLease(workspace_blob(registry), what)
        lease.acquire(timeout)
    except AzureError as exc:
        from reconciler.adapters.azureml_errors import translate

        raise translate(exc, registry.url, "lease the lock blob") from exc
    try:
        yield
    finally:
        lease.release()
