"""`reconciler serve` as a real process, and the real things around it: an HTTP listener
for notifications, signed webhook deliveries, a bare repository as the remote."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from reconciler.serve.webhook import signature
from tests.conftest import GitRepo
from tests.processes import Running, wait_for

SECRET = "webhook-secret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Serve(Running):
    def __init__(
        self,
        repo: Path,
        *extra: str,
        secret: str | None = SECRET,
        started: list[Any],
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        env = dict(env or {})
        if secret is not None:
            env["RECONCILER_WEBHOOK_SECRET"] = secret
        super().__init__(
            "serve",
            "--repo",
            str(repo),
            "--listen",
            f"127.0.0.1:{self.port}",
            *extra,
            cwd=repo,
            env=env,
        )
        started.append(self)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(lambda: any("serving on" in x for x in self.lines), 20, "serve to listen")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def status(self) -> dict[str, Any]:
        code, body = self.get("/api/status")
        assert code == 200
        data: dict[str, Any] = json.loads(body)
        return data

    def metric(self, name: str, **labels: str) -> float | None:
        _, body = self.get("/metrics")
        wanted = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
        )
        for line in body.decode().splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def hook(
        self,
        event: str,
        payload: Any,
        secret: str | None = SECRET,
        signature_value: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": event}
        if signature_value is not None:
            headers["X-Hub-Signature-256"] = signature_value
        elif secret is not None:
            headers["X-Hub-Signature-256"] = signature(secret.encode(), body)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", "/hooks/github", body, headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()

    def cycles(self) -> int:
        return len(self.reconciles())


class Listener:
    """A local HTTP endpoint that records every POST it receives, by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                with owner._lock:
                    owner.received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body in self.received if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Clone(GitRepo):
    """An existing clone."""

    def __init__(self, root: Path) -> None:
        self.root = root


def with_remote(tmp: Path, files: dict[str, str]) -> tuple[GitRepo, Clone]:
    """A bare repository as the remote; an author's clone that pushed ``files`` to it, and
    the clone `serve` runs in (fetching from the bare one)."""
    bare = tmp / "remote.git"
    (tmp / "author").mkdir()
    author = GitRepo(tmp / "author")
    author.git("init", "--bare", "-q", "-b", "main", str(bare))
    author.git("remote", "add", "origin", str(bare))
    for path, text in files.items():
        author.write(path, text)
    author.commit("seed")
    author.git("push", "-q", "-u", "origin", "main")
    author.git("clone", "-q", str(bare), str(tmp / "deploy"))
    return author, Clone(tmp / "deploy")
