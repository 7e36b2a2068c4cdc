"""Faults at the service: throttling, server errors, dropped connections, bad credentials.
The emulator injects them; the adapter retries with backoff, a persistent fault fails the
run with what failed, and the next run heals."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.adapters.azureml import AzureMLRegistry
from reconciler.adapters.azureml_errors import RetryPolicy
from reconciler.ports import RegistryError, TransientRegistryError
from tests.azure_support import Workspace
from tests.conftest import Cli, GitRepo
from tests.test_reconcile import actions, seed

PUT_BASE = "PUT {ws}/environments/base/versions/*"


def test_throttling_is_retried_and_the_apply_succeeds(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    workspace.fault(status=429, count=2, match=PUT_BASE, retry_after=0)
    code, out, err = cli("apply", "--registry", workspace.url)
    assert code == 0, out + err
    puts = workspace.requests("PUT ")
    base_puts = [line for line in puts if "/environments/base/" in line]
    # two throttled, then created (a later 200 records the build status in a tag)
    assert [line.rsplit(" ", 1)[-1] for line in base_puts][:3] == ["429", "429", "201"]
    assert cli("plan", "--registry", workspace.url)[0] == 0


def test_dropped_connections_and_server_errors_are_retried(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    workspace.fault(drop=True, count=1, match="GET {ws}/environments")
    workspace.fault(status=500, count=1, match="PUT {ws}/environments/pydata/versions/*")
    code, out, err = cli("apply", "--registry", workspace.url)
    assert code == 0, out + err
    # (the lock's datastore look-up comes first; the listing is the first environment call)
    assert workspace.requests(f"GET {workspace.arm_path}/environments")[0].endswith("-> dropped")
    assert any(line.endswith("-> 500") for line in workspace.requests("/pydata/"))
    assert cli("plan", "--registry", workspace.url)[0] == 0


def test_a_persistent_fault_fails_the_run_then_the_next_run_heals(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    workspace.fault(status=503, match=PUT_BASE)  # until cleared
    code, result = cli.json("apply", "--registry", workspace.url)
    assert code == 1
    assert [(f["name"], f["action"]) for f in result["failed"]] == [("base", "create")]
    assert "503" in result["failed"][0]["error"]
    assert sorted(c["name"] for c in result["applied"]) == ["inline", "pydata", "serving"]
    # nothing half-applied: base has no version, the others are complete
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert actions(plan) == [("create", "base", "1")]
    workspace.clear_faults()
    assert cli("apply", "--registry", workspace.url)[0] == 0
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert code == 0 and plan["changes"] == [] and len(plan["in_sync"]) == 4


def test_a_fault_while_reading_fails_the_plan_with_a_message(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    workspace.fault(status=500, match="GET {ws}/environments")
    code, out, err = cli("plan", "--registry", workspace.url)
    assert code == 1
    assert "answered 500" in err and "after 3 attempts" in err
    assert len(workspace.requests("GET ")) == 3


def test_bad_credentials_are_terminal_with_a_clear_message(
    repo: GitRepo, cli: Cli, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(repo)
    monkeypatch.setenv("RECONCILER_AZUREML_TOKEN", "not-the-token")
    code, out, err = cli("plan", "--registry", workspace.url)
    assert code == 1
    assert f"not authorised for {workspace.url}" in err and "az login" in err
    assert len(workspace.requests()) == 1  # never retried


def test_an_untrusted_certificate_names_the_ca_setting(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    registry = AzureMLRegistry(workspace.url, tmp_path, None, RetryPolicy(2, 0))
    with pytest.raises(RegistryError, match="REQUESTS_CA_BUNDLE") as caught:
        registry.read_state()
    assert not caught.value.transient


def test_transient_errors_give_up_after_the_configured_attempts(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace.fault(status=429, match="GET {ws}/environments")
    registry = AzureMLRegistry(workspace.url, tmp_path, None, RetryPolicy(4, 0))
    with pytest.raises(TransientRegistryError, match="after 4 attempts"):
        registry.read_state()
    assert len(workspace.requests("GET ")) == 4
