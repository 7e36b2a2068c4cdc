"""A Unix socket that forwards to the Docker Engine's socket until it is cut: an engine
that stops answering mid-build, without touching the shared daemon."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path


class SocketProxy:
    def __init__(self, listen: Path, upstream: str) -> None:
        self.listen = listen
        self.upstream = upstream
        self.connections = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(listen))
        self._server.listen(16)
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.listen}"

    def _accept(self) -> None:
        while not self._cut.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            with self._lock:
                self.connections += 1
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """The engine goes away: every open connection is reset, new ones are refused."""
        self._cut.set()
        self._server.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.listen)
