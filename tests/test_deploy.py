"""What ships for deploying `serve`: the alert rules (promtool), the Kubernetes manifests
(validated offline against Kubernetes' JSON schemas) and the container image (built from a
locally made Debian base with the network disabled, run, and probed from outside)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import GitRepo, image_env
from tests.serve_support import free_port

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed (scripts/test installs Debian's prometheus)")
    return found


def test_alert_rules_pass_promtool() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = {
        r["alert"]
        for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    assert {
        "ReconcilerOutOfSync",
        "ReconcilerReconcileFailing",
        "ReconcilerBuildsFailing",
        "ReconcilerNoRecentSuccess",
    } <= names


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text(
        (DEPLOY / "prometheus" / "alerts.yml").read_text().replace("> 0\n", "> > 0\n", 1)
    )
    done = subprocess.run(
        [_promtool(), "check", "rules", str(broken)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0


def manifests() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found[f"{document['kind']}/{path.name}"] = document
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_validate_against_the_schemas(version: str) -> None:
    found = manifests()
    assert {k.split("/")[0] for k in found} == {
        "ConfigMap",
        "CronJob",
        "Deployment",
        "Secret",
        "Service",
        "ServiceAccount",
    }
    for name, document in found.items():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {exc.message} at {list(exc.path)}") from None


def test_manifests_wire_probes_secret_identity_and_config() -> None:
    found = manifests()
    deployment = found["Deployment/deployment.yaml"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    secret_env = {e["name"]: e for e in container["env"]}["RECONCILER_WEBHOOK_SECRET"]
    ref = secret_env["valueFrom"]["secretKeyRef"]
    assert ref["name"] == found["Secret/secret.yaml"]["metadata"]["name"]
    assert ref["key"] in found["Secret/secret.yaml"]["stringData"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    account = found["ServiceAccount/serviceaccount.yaml"]
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    config = found["ConfigMap/configmap.yaml"]["data"]["reconciler.toml"]
    from reconciler.settings import _from_file

    repo = Path(os.environ.get("TMPDIR", "/tmp")) / f"cm-{uuid.uuid4().hex[:8]}"
    repo.mkdir()
    try:
        (repo / "reconciler.toml").write_text(config)
        settings = _from_file(repo)  # the shipped settings parse, [[notify]] included
    finally:
        shutil.rmtree(repo)
    assert settings["notify"][0].format.value == "slack"
    cron = found["CronJob/cronjob.yaml"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cron["containers"][0]["args"][:2] == ["reconcile", "--once"]
    port = found["Service/service.yaml"]["spec"]["ports"][0]["targetPort"]
    assert port == container["ports"][0]["name"]


def test_a_broken_manifest_is_refused() -> None:
    deployment = json.loads(json.dumps(manifests()["Deployment/deployment.yaml"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {
        "name": "http"
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    deployment = json.loads(json.dumps(manifests()["Deployment/deployment.yaml"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


# -- the container image ------------------------------------------------------------------


def _docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def test_container_image_serves_health_from_outside(
    docker_env: Any, repo: GitRepo, tmp_path: Path
) -> None:
    tag = f"reconciler-test/serve:{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DOCKER_HOST": docker_env.docker_host}
    built = subprocess.run(
        [str(ROOT / "scripts" / "image"), tag],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env=env,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert built.stdout.strip() == tag
    os.environ.setdefault("DOCKER_HOST", docker_env.docker_host)
    repo.write("environments/a.yml", image_env("a"))
    repo.commit("seed")
    for path in [repo.root, *repo.root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    port = free_port()
    name = f"reconciler-serve-{uuid.uuid4().hex[:8]}"
    try:
        config = json.loads(_docker("image", "inspect", tag))[0]["Config"]
        assert config["User"] == "10001:10001"
        assert config["Entrypoint"] == ["/usr/bin/tini", "--", "reconciler", "serve"]
        _docker(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            "--volume",
            f"{repo.root}:/repo",
            tag,
            "--repo",
            "/repo",
            "--listen",
            f"127.0.0.1:{port}",
            "--interval",
            "1h",
        )

        def get(path: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()
            except OSError:
                return 0, b""

        deadline = time.monotonic() + 90
        while get("/readyz")[0] != 200:
            if time.monotonic() > deadline:
                raise AssertionError("not ready: " + _docker("logs", name, check=False))
            time.sleep(0.5)
        assert get("/healthz") == (200, b"ok\n")  # from outside the container
        status = json.loads(get("/api/status")[1])
        assert [e["name"] for e in status["environments"]] == ["a"]
        assert _docker("exec", name, "id", "-u") == "10001"
        assert _docker("exec", name, "git", "--version").startswith("git version")
        _docker("stop", "--time", "30", name)
        assert _docker("inspect", "--format", "{{.State.ExitCode}}", name) == "0"
        logs = subprocess.run(
            ["docker", "logs", name], capture_output=True, text=True, check=False
        ).stdout
        assert "reconcile 1 (start): applied 1" in logs and logs.rstrip().endswith("stopped")
    finally:
        _docker("rm", "--force", name, check=False)
        _docker("rmi", "--force", tag, check=False)
