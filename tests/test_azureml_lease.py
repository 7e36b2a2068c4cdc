"""The registry lock across machines: a lease on a blob in the workspace's default
storage, through azure-storage-blob over real HTTPS to the emulator. Two applies from two
working copies race on one workspace; a holder killed while holding leaves a lease that
expires; a refused run names the holder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reconciler.adapters.azureml import AzureMLRegistry
from reconciler.adapters.azureml_errors import RetryPolicy
from reconciler.adapters.azureml_lease import BlobLease, holder_text, workspace_blob
from reconciler.ports import LockTimeout
from tests.azure_support import Workspace
from tests.conftest import Cli, GitRepo, image_env

LEASE_CALLS = "PUT /{account}/{container}/{blob}?comp=lease"


def registry(workspace: Workspace, tmp_path: Path) -> AzureMLRegistry:
    return AzureMLRegistry(workspace.url, tmp_path / "locks", None, RetryPolicy(2, 0.01))


def lease_statuses(workspace: Workspace) -> list[str]:
    return [
        line.rsplit(" ", 1)[-1]
        for line in workspace.running.emulator.requests
        if line.startswith("PUT /emulatorstore/") and "reconciler-locks/" in line
    ]


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment for a reconciler of its own, without the cloud name an
    in-process MLClient leaves behind (the child has no such cloud registered)."""
    env = {k: v for k, v in os.environ.items() if k != "AZUREML_CURRENT_CLOUD"}
    env.update(extra)
    return env


def write_repo(root: Path, count: int) -> None:
    root.mkdir(parents=True)
    (root / "environments").mkdir()
    for i in range(count):
        (root / "environments" / f"race{i:02d}.yml").write_text(image_env(f"race{i:02d}"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "seed"], cwd=root, check=True)


def test_two_applies_from_two_working_copies_take_turns(
    workspace: Workspace, tmp_path: Path
) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    write_repo(first, 12)
    write_repo(second, 12)
    # two clones of one repository: the same owner stamp
    env = child_environment(RECONCILER_AZUREML_CONCURRENCY="2", RECONCILER_OWNER="team/envs")
    # two writers at a time: each run lasts long enough for the other to wait on it
    command = [sys.executable, "-m", "reconciler", "apply", "--registry", workspace.url]
    runs = [
        subprocess.Popen(
            [*command, "--repo", str(root), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root in (first, second)
    ]
    results = [run.communicate(timeout=180) for run in runs]
    codes = [run.returncode for run in runs]
    assert codes == [0, 0], results
    applied = [len(json.loads(out)["applied"]) for out, _ in results]
    # one of them created the 12 environments; the other, planning under the lock after
    # it, found nothing to do: no version was written twice
    assert sorted(applied) == [0, 12], applied
    client = workspace.client()
    for i in range(12):
        assert [e.version for e in client.environments.list(f"race{i:02d}")] == ["1"]
    statuses = lease_statuses(workspace)
    assert statuses.count("201") >= 2  # two acquisitions (and the lock blob made once)


def test_a_held_lease_refuses_with_the_holders_name(
    workspace: Workspace, tmp_path: Path, repo: GitRepo, cli: Cli
) -> None:
    repo.write("environments/base.yml", image_env("base"))
    repo.commit("seed")
    holder = registry(workspace, tmp_path)
    with holder.lock(5):
        started = time.monotonic()
        code, out, err = cli("apply", "--registry", workspace.url, "--lock-timeout", "0.5")
        waited = time.monotonic() - started
    assert code == 1
    assert f"registry {workspace.url} is locked by" in err
    assert f"pid {os.getpid()}" in err and "since" in err and "reconciler-locks/" in err
    assert waited >= 0.5
    assert "409" in lease_statuses(workspace)  # LeaseAlreadyPresent, waited on
    # released at the end of the block: the next apply goes through
    code, out, err = cli("apply", "--registry", workspace.url, "--lock-timeout", "5")
    assert code == 0, out + err


def test_a_crashed_holders_lease_expires_and_is_taken_over(
    workspace: Workspace, tmp_path: Path, repo: GitRepo, cli: Cli
) -> None:
    repo.write("environments/base.yml", image_env("base"))
    repo.commit("seed")
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from reconciler.adapters.azureml import AzureMLRegistry
        registry = AzureMLRegistry({workspace.url!r}, Path({str(tmp_path)!r}))
        with registry.lock(10):
            print("held", flush=True)
            time.sleep(600)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=child_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().strip() == "held", process.stderr.read()
        process.send_signal(signal.SIGKILL)  # no release, no clean-up: a crash
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    code, out, err = cli("apply", "--registry", workspace.url, "--lock-timeout", "0.3")
    assert code == 1 and f"pid {process.pid}" in err  # still held: it has not expired
    assert "expires within 60s" in err
    workspace.control("POST", "clock", {"advance_seconds": 61})  # the lease runs out
    code, out, err = cli("apply", "--registry", workspace.url, "--lock-timeout", "0.3")
    assert code == 0, out + err
    assert "1 change(s) applied" in out


def test_the_lease_is_renewed_while_the_run_lasts(workspace: Workspace, tmp_path: Path) -> None:
    holder = registry(workspace, tmp_path)
    lease = BlobLease(workspace_blob(holder), "registry", lease_seconds=15, renew_every=0.2)
    lease.acquire(1)
    try:
        time.sleep(0.7)
        assert lease.renewals >= 2 and lease.lost is None
        properties = lease.blob.get_blob_properties()
        assert properties.lease.state == "leased"
        assert properties.metadata["reconcilerholder"] == holder_text()
    finally:
        lease.release()
    properties = lease.blob.get_blob_properties()
    assert properties.lease.state == "available" and not properties.metadata


def test_a_lost_lease_fails_the_run_at_release(workspace: Workspace, tmp_path: Path) -> None:
    from azure.storage.blob import BlobLeaseClient

    holder = registry(workspace, tmp_path)
    lease = BlobLease(workspace_blob(holder), "registry X", lease_seconds=15, renew_every=0.2)
    lease.acquire(1)
    BlobLeaseClient(lease.blob).break_lease(lease_break_period=0)  # someone broke it
    time.sleep(0.6)
    with pytest.raises(Exception, match="registry X: the lease was lost"):
        lease.release()


def test_lock_local_is_a_file_lock(workspace: Workspace, tmp_path: Path) -> None:
    local = AzureMLRegistry(workspace.url, tmp_path / "locks", None, lock="local")
    before = len(lease_statuses(workspace))
    with (
        local.lock(1),
        pytest.raises(LockTimeout, match="lock on this machine"),
        local.lock(0.05),
    ):
        pass
    assert len(lease_statuses(workspace)) == before
