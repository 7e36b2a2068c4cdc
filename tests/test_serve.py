"""`reconciler serve` as a real process: metrics read back through a real Prometheus,
the GitHub webhook against a bare repository as the remote, notifications received by a
local HTTP listener, readiness, and the dashboard in headless Chromium."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.adapters.sqlite_registry import SqliteRegistry
from tests.conftest import GitRepo, image_env
from tests.processes import wait_for
from tests.serve_support import Listener, Serve, free_port, with_remote
from tests.test_drift import hand_write

SCHEMA = Path(__file__).parent.parent / "reconciler" / "schemas" / "serve-status.schema.json"


def seed(repo: GitRepo) -> None:
    repo.write("environments/a.yml", image_env("a", description="first"))
    repo.commit("seed")


def versions(db: Path, name: str) -> list[str]:
    registry = SqliteRegistry(db)
    try:
        container = registry.get_container(name)
        return [v.version for v in container.versions] if container else []
    finally:
        registry.close()


# -- health, status, metrics ------------------------------------------------------------


def test_status_health_and_metrics(repo: GitRepo, started: list[Any]) -> None:
    seed(repo)
    serve = Serve(repo.root, "--interval", "1h", started=started)
    serve.wait_line("reconcile 1 (start)", "applied 1")
    wait_for(lambda: serve.get("/readyz")[0] == 200, 10, "ready")
    assert serve.get("/healthz") == (200, b"ok\n")
    document = serve.status()
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert document["health"]["ready"] is True and document["health"]["cycles"] == 1
    assert document["summary"]["environments"] == 1 and document["summary"]["in_sync"] == 1
    assert [r["name"] for r in document["environments"]] == ["a"]
    assert document["environments"][0]["latest_version"] == "1"
    assert document["runs"][0]["result"] == "applied"
    assert serve.metric("reconciler_reconcile_total", result="applied") == 1
    assert serve.metric("reconciler_environments", state="in_sync") == 1
    assert serve.metric("reconciler_last_success_timestamp_seconds") == pytest.approx(
        time.time(), abs=60
    )
    code, body = serve.get("/environments/nope")
    assert code == 404
    assert serve.get("/nothing-here")[0] == 404
    assert serve.stop(signal.SIGTERM) == 0
    assert serve.lines[-1] == "stopped"
    status_file = json.loads((repo.root / ".reconciler" / "status.json").read_text())
    assert status_file["state"] == "stopped" and status_file["listen"] == serve.url


def test_bad_listen_address_is_a_clear_error(repo: GitRepo) -> None:
    seed(repo)
    done = subprocess.run(
        [*_python(), "serve", "--repo", str(repo.root), "--listen", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "listen 'nowhere': expected HOST:PORT" in done.stderr


def _python() -> list[str]:
    import sys

    return [sys.executable, "-m", "reconciler"]


def test_metrics_scraped_by_prometheus(repo: GitRepo, started: list[Any], tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed (scripts/test installs Debian's prometheus)")
    seed(repo)
    repo.write("environments/b.yml", image_env("b"))
    repo.commit("b")
    serve = Serve(repo.root, "--interval", "1h", started=started)
    serve.wait_line("reconcile 1 (start)", "applied 2")
    hand_write(repo, "stray", "1", image="busybox:1.36")  # unmanaged, seen by the next cycle
    serve.hook("push", {"ref": "refs/heads/main", "after": "0" * 40})
    serve.wait_line("reconcile 2 (push", after=1)  # applies only, as watch does
    serve.wait_line("reconcile 3 (drift report)", after=2)  # then the full check
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: reconciler\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{serve.port}']\n"
    )
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def query(expression: str) -> list[dict[str, Any]]:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
                {"query": expression}
            )
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    data = json.loads(response.read())
            except OSError:
                return []
            assert data["status"] == "success"
            result: list[dict[str, Any]] = data["data"]["result"]
            return result

        def value(expression: str) -> float | None:
            found = query(expression)
            return float(found[0]["value"][1]) if found else None

        wait_for(lambda: value('up{job="reconciler"}') == 1, 60, "Prometheus to scrape serve")
        assert value('reconciler_reconcile_total{result="applied"}') == 1
        assert value('reconciler_reconcile_total{result="in_sync"}') == 2
        assert value('reconciler_environments{state="in_sync"}') == 2
        assert value('reconciler_environments{state="unmanaged"}') == 1
        assert value('reconciler_drift_items{class="unmanaged"}') == 1
        assert value('reconciler_webhook_deliveries_total{result="accepted"}') == 1
        assert value("reconciler_reconcile_duration_seconds_count") == 3
        assert value("reconciler_interval_seconds") == 3600
        assert value("reconciler_ready") == 1
        names = {r["metric"]["__name__"] for r in query('{__name__=~"reconciler_.+"}')}
        assert {
            "reconciler_reconcile_total",
            "reconciler_reconcile_duration_seconds_bucket",
            "reconciler_last_success_timestamp_seconds",
            "reconciler_environments",
            "reconciler_drift_items",
            "reconciler_builds_total",
            "reconciler_webhook_deliveries_total",
        } <= names
        # A SQLite registry makes no HTTP requests: the family is declared, with no series.
        exposition = serve.get("/metrics")[1].decode()
        assert "# TYPE reconciler_registry_requests_total counter" in exposition
    finally:
        process.terminate()
        process.wait(30)


# -- webhook ----------------------------------------------------------------------------


def test_github_webhook(tmp_path: Path, started: list[Any]) -> None:
    author, deploy = with_remote(tmp_path, {"environments/a.yml": image_env("a")})
    serve = Serve(deploy.root, "--interval", "1h", "--debounce", "100", started=started)
    serve.wait_line("reconcile 1 (start)", "applied 1")
    db = deploy.registry_db
    author.write("environments/b.yml", image_env("b"))
    head = author.commit("add b")
    author.git("push", "-q", "origin", "main")
    push = {"ref": "refs/heads/main", "after": head}

    # Unsigned, wrongly signed, signed with another secret: 401, nothing fetched or applied.
    assert serve.hook("push", push, secret=None)[0] == 401
    assert serve.hook("push", push, signature_value="sha256=" + "0" * 64)[0] == 401
    assert serve.hook("push", push, secret="another secret")[0] == 401
    code, answer = serve.hook("ping", {"zen": "Keep it logically awesome."})
    assert (code, answer["result"]) == (200, "ping")
    code, answer = serve.hook("push", {"ref": "refs/heads/feature", "after": head})
    assert (code, answer["result"]) == (202, "ignored")
    code, answer = serve.hook("issues", {"action": "opened"})
    assert (code, answer["result"]) == (202, "ignored")
    time.sleep(1.0)  # more than the debounce: a wrongly queued reconcile would have run
    assert serve.cycles() == 1
    assert versions(db, "b") == []
    assert deploy.git("rev-parse", "origin/main") != head  # nothing fetched

    # Over GitHub's 25 MB: refused from the headers, the body never read.
    connection = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=10)
    connection.putrequest("POST", "/hooks/github")
    connection.putheader("Content-Length", str(26 * 1024 * 1024))
    connection.putheader("X-GitHub-Event", "push")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    connection.close()

    # A signed push to the tracked branch: fetched, applied, visible in the registry.
    code, answer = serve.hook("push", push)
    assert (code, answer["result"]) == (202, "accepted")
    line = serve.wait_line(f"(push {head[:12]})", "applied 1", after=1)
    assert "b:1 create" in line
    assert versions(db, "b") == ["1"]
    assert deploy.git("rev-parse", "origin/main") == head  # what was reconciled
    assert not (deploy.root / "environments" / "b.yml").exists()  # the working tree as it was
    for result, count in [
        ("unauthorized", 3),
        ("ping", 1),
        ("ignored", 2),
        ("too_large", 1),
        ("accepted", 1),
    ]:
        assert serve.metric("reconciler_webhook_deliveries_total", result=result) == count
    assert serve.stop() == 0


def test_watch_flag_reconciles_on_file_events(repo: GitRepo, started: list[Any]) -> None:
    seed(repo)
    serve = Serve(repo.root, "--interval", "1h", "--watch", "--debounce", "50", started=started)
    serve.wait_line("reconcile 1 (start)", "applied 1")
    assert "watching files" in serve.lines[0]
    repo.write("environments/b.yml", image_env("b"))
    line = serve.wait_line("file event", "b:1 create", after=1)
    assert "reconcile 2" in line
    assert versions(repo.registry_db, "b") == ["1"]
    serve.wait_line("reconcile 3 (drift report)", after=2)
    assert serve.status()["summary"]["environments"] == 2
    assert serve.stop() == 0


def test_with_watch_the_working_tree_is_fast_forwarded(tmp_path: Path, started: list[Any]) -> None:
    author, deploy = with_remote(tmp_path, {"environments/a.yml": image_env("a")})
    serve = Serve(deploy.root, "--interval", "1h", "--watch", started=started)
    serve.wait_line("reconcile 1 (start)", "applied 1")
    author.write("environments/b.yml", image_env("b"))
    head = author.commit("add b")
    author.git("push", "-q", "origin", "main")
    assert serve.hook("push", {"ref": "refs/heads/main", "after": head})[0] == 202
    serve.wait_line("b:1 create", after=1)
    assert deploy.git("rev-parse", "HEAD") == head
    assert (deploy.root / "environments" / "b.yml").is_file()
    assert serve.stop() == 0


def test_webhook_without_a_secret_is_refused(repo: GitRepo, started: list[Any]) -> None:
    seed(repo)
    serve = Serve(repo.root, "--interval", "1h", secret=None, started=started)
    serve.wait_line("reconcile 1 (start)")
    code, answer = serve.hook("push", {"ref": "refs/heads/main"}, secret="anything")
    assert code == 503 and "RECONCILER_WEBHOOK_SECRET" in answer["message"]
    assert any("webhook off" in line for line in serve.lines)


# -- notifications and readiness ---------------------------------------------------------

TOKEN = "T0KEN-in-the-path"


def _settings(listener: Listener, dead_port: int) -> str:
    entries = [
        (listener.url(f"/json/{TOKEN}"), "json"),
        (listener.url("/slack"), "slack"),
        (listener.url("/teams"), "teams"),
        (f"http://127.0.0.1:{dead_port}/dead/{TOKEN}", "json"),
    ]
    body = 'unready_after = 2\nreport_url = "https://reports.example.invalid/drift"\n'
    for url, fmt in entries:
        body += (
            f'\n[[notify]]\nurl = "{url}"\nformat = "{fmt}"\n'
            'on = ["drift", "failure", "recovery", "applied"]\n'
        )
    return body


def test_notifications_once_per_transition_and_readiness(repo: GitRepo, started: list[Any]) -> None:
    listener = Listener()
    dead_port = free_port()  # nothing listens there
    try:
        repo.write("reconciler.toml", _settings(listener, dead_port))
        seed(repo)
        serve = Serve(repo.root, "--interval", "1s", started=started)

        def events(path: str) -> list[str]:
            return [m.get("event") or _event_of(m) for m in listener.at(path)]

        def settled(path: str, expected: list[str]) -> None:
            wait_for(lambda: events(path) == expected, 20, f"{expected} at {path}")

        # The first cycle applies a: one `applied` message per format.
        for path in (f"/json/{TOKEN}", "/slack", "/teams"):
            settled(path, ["applied"])
        first = listener.at(f"/json/{TOKEN}")[0]
        assert first["environments"] == ["a"] and first["details"] == ["a:1 create"]
        assert first["report_url"] == "https://reports.example.invalid/drift"

        # Steady state: more cycles, no more messages.
        cycles = serve.cycles()
        wait_for(lambda: serve.cycles() >= cycles + 3, 20, "three more cycles")
        assert events("/slack") == ["applied"]

        # Out-of-band drift: one `drift` message, however many cycles see it.
        hand_write(repo, "a", "1", description="edited by hand")
        settled("/teams", ["applied", "drift"])
        cycles = serve.cycles()
        wait_for(lambda: serve.cycles() >= cycles + 3, 20, "three more cycles")
        for path in (f"/json/{TOKEN}", "/slack", "/teams"):
            assert events(path) == ["applied", "drift"]
        drift = listener.at(f"/json/{TOKEN}")[1]
        assert drift["environments"] == ["a"] and drift["classes"] == ["out_of_band"]
        slack = listener.at("/slack")[1]
        assert "drift in 1 environment" in slack["text"]
        assert "<https://reports.example.invalid/drift|drift report>" in json.dumps(slack)
        card = listener.at("/teams")[1]["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert card["content"]["actions"][0]["url"] == "https://reports.example.invalid/drift"

        # A broken file: cycles fail; not ready after two; one `failure` message.
        assert serve.get("/readyz")[0] == 200
        repo.write("environments/a.yml", "name: a\nimage: [unclosed\n")
        wait_for(lambda: serve.get("/readyz")[0] == 503, 20, "not ready")
        assert b"consecutive failed" in serve.get("/readyz")[1]
        settled("/slack", ["applied", "drift", "failure"])

        # Fixed: ready again, one `recovery` message; the drift still there is not new.
        repo.write("environments/a.yml", image_env("a", description="first"))
        wait_for(lambda: serve.get("/readyz")[0] == 200, 20, "ready again")
        for path in (f"/json/{TOKEN}", "/slack", "/teams"):
            settled(path, ["applied", "drift", "failure", "recovery"])
        cycles = serve.cycles()
        wait_for(lambda: serve.cycles() >= cycles + 2, 20, "two more cycles")
        assert events("/teams") == ["applied", "drift", "failure", "recovery"]

        # The dead endpoint was retried, never stopped a cycle, and its token never shown.
        wait_for(
            lambda: any("notification to http://127.0.0.1" in x for x in serve.lines), 30, "log"
        )
        assert serve.stop() == 0
        output = serve.output() + (repo.root / ".reconciler" / "status.json").read_text()
        assert f"http://127.0.0.1:{dead_port}/*** failed" in output
        assert TOKEN not in output
        assert TOKEN not in json.dumps(serve_status_notify(repo))
    finally:
        listener.close()


def serve_status_notify(repo: GitRepo) -> Any:
    return json.loads((repo.root / ".reconciler" / "status.json").read_text())["notify"]


def _event_of(message: dict[str, Any]) -> str:
    """The event of a Slack or Teams message, from its title."""
    text = json.dumps(message)
    for word, event in [
        ("applied", "applied"),
        ("drift in", "drift"),
        ("failing", "failure"),
        ("recovered", "recovery"),
    ]:
        if f"reconciler: {word}" in text or f"reconcile {word}" in text:
            return event
    return "?"


def test_notify_test_sends_one_sample_each(repo: GitRepo) -> None:
    listener = Listener()
    try:
        repo.write(
            "reconciler.toml",
            "".join(
                f'[[notify]]\nurl = "{listener.url("/" + f)}"\nformat = "{f}"\n\n'
                for f in ("json", "slack", "teams")
            ),
        )
        seed(repo)
        done = subprocess.run(
            [*_python(), "notify", "--test", "--repo", str(repo.root)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert len(listener.at("/json")) == len(listener.at("/slack")) == 1
        assert listener.at("/json")[0]["title"] == "test notification from reconciler"
        assert "blocks" in listener.at("/slack")[0]
        assert "attachments" in listener.at("/teams")[0]
        assert done.stdout.count("sent") == 3
    finally:
        listener.close()


# -- dashboard ------------------------------------------------------------------------


def chromium_dom(url: str, profile: Path, screenshot: Path | None = None) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed (scripts/test installs Debian's chromium)")
    base = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--user-data-dir=" + str(profile),
    ]
    if screenshot is not None:
        subprocess.run(
            [*base, f"--screenshot={screenshot}", "--window-size=1280,1000", url],
            capture_output=True,
            timeout=120,
            check=False,
        )
    done = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_dashboard_in_headless_chromium(repo: GitRepo, started: list[Any], tmp_path: Path) -> None:
    seed(repo)
    repo.write("environments/b.yml", image_env("b"))
    repo.commit("b")
    serve = Serve(repo.root, "--interval", "1h", "--debounce", "50", started=started)
    serve.wait_line("reconcile 1 (start)", "applied 2")
    repo.write("environments/a.yml", image_env("a", "busybox:1.37", description="second"))
    repo.commit("bump a")
    hand_write(repo, "b", "1", tags={"team": "<script>alert(1)</script>"})
    hand_write(repo, "stray", "1", image="busybox:1.36")
    serve.hook("push", {"ref": "refs/heads/main", "after": "f" * 40})
    serve.wait_line("reconcile 2", "a:2 new_version", after=1)
    serve.wait_line("reconcile 3 (drift report)", after=2)
    raw = serve.get("/")[1].decode()
    assert "<script" not in raw.replace("&lt;script", "")
    assert "src=" not in raw and "<link" not in raw  # no external assets

    shots = tmp_path / "screenshots"
    shots.mkdir()
    dom = chromium_dom(serve.url + "/", tmp_path / "profile", shots / "dashboard.png")
    assert 'id="verdict">drift</span>' in dom
    assert 'id="env-a" data-state="in_sync"' in dom
    assert 'id="env-b" data-state="drift"' in dom
    assert 'id="env-stray" data-state="unmanaged"' in dom
    assert ">out_of_band</span>" in dom
    assert 'id="count-environments"><b>3</b>' in dom
    assert 'data-result="applied"' in dom
    assert "push ffffffffffff" in dom

    page = chromium_dom(serve.url + "/environments/a", tmp_path / "profile", shots / "env-a.png")
    assert 'id="version-1"' in page and 'id="version-2"' in page
    assert 'data-from="1" data-to="2"' in page
    assert "busybox:1.36" in page and "busybox:1.37" in page  # the diff of 1 to 2
    b_page = chromium_dom(serve.url + "/environments/b", tmp_path / "profile")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in b_page
    assert "out_of_band" in b_page
    _, api = serve.get("/api/environments/a")
    document = json.loads(api)
    assert [v["version"] for v in document["versions"]] == ["2", "1"]
    assert document["diffs"][0]["from"] == "1" and document["diffs"][0]["to"] == "2"


# -- an Azure ML registry ---------------------------------------------------------------


def test_registry_requests_are_counted_by_status_code(
    repo: GitRepo, started: list[Any], workspace: Any, emulator: Any
) -> None:
    from reconciler.emulator.server import client_settings

    seed(repo)
    serve = Serve(
        repo.root,
        "--interval",
        "1h",
        "--registry",
        workspace.url,
        started=started,
        env=client_settings(emulator),
    )
    serve.wait_line("reconcile 1 (start)", "applied 1", timeout=60)
    wait_for(lambda: serve.get("/readyz")[0] == 200, 10, "ready")
    seen = Counter(line.rsplit(" ", 1)[1] for line in workspace.requests())
    assert seen["200"] > 0
    for code, count in seen.items():  # what the emulator answered, as serve counted it
        assert serve.metric("reconciler_registry_requests_total", code=code) == count, code
    document = serve.status()
    assert document["service"]["registry"] == workspace.url
    assert [r["name"] for r in document["environments"]] == ["a"]
    code, body = serve.get("/environments/a")
    assert code == 200 and b"id='version-1'" in body  # the page reads the service
