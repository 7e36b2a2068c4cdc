"""A minimal client for the OCI distribution HTTP API: list tags, read a manifest digest.

Only what the builder needs to decide "already built" in one request per repository.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from reconciler.ports import BuildError, BuilderUnavailable

_MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class OciRegistry:
    def __init__(self, host: str, timeout: float = 10.0, scheme: str = "http") -> None:
        self.host = host
        self.base = f"{scheme}://{host}"
        self.timeout = timeout

    def _open(self, request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers or {}), b""
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BuilderUnavailable(f"OCI registry {self.host} is unreachable: {reason}") from exc

    def tags(self, repository: str) -> set[str]:
        """Every tag of ``repository`` (paging through `Link` headers); empty if none."""
        found: set[str] = set()
        path: str | None = f"/v2/{repository}/tags/list?n=10000"
        while path:
            status, headers, body = self._open(urllib.request.Request(self.base + path))
            if status == 404:
                return found  # the repository does not exist yet
            if status != 200:
                raise BuildError(
                    f"OCI registry {self.host}: listing {repository} gave HTTP {status}"
                )
            found.update(json.loads(body or b"{}").get("tags") or ())
            match = _NEXT.search(headers.get("Link", "") or headers.get("link", ""))
            path = match.group(1) if match else None
        return found

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        request = urllib.request.Request(
            f"{self.base}/v2/{repository}/manifests/{reference}",
            method="HEAD",
            headers={"Accept": _MANIFEST_TYPES},
        )
        status, headers, _ = self._open(request)
        if status == 404:
            return None
        if status != 200:
            raise BuildError(
                f"OCI registry {self.host}: manifest {repository}:{reference} gave HTTP {status}"
            )
        return headers.get("Docker-Content-Digest") or headers.get("docker-content-digest")
