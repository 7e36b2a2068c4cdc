"""A minimal client for the OCI distribution HTTP API: list tags, read a manifest digest.

Only what the builder needs to decide "already built" in one request per repository.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
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
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        headers_out = {"Accept": _MANIFEST_TYPES}
        status, headers, _ = self._open(
            urllib.request.Request(url, method="HEAD", headers=headers_out)
        )
        if status == 401:  # public registries want an anonymous bearer token first
            token = self._anonymous_token(
                headers.get("WWW-Authenticate") or headers.get("www-authenticate") or ""
            )
            if token:
                headers_out["Authorization"] = f"Bearer {token}"
                status, headers, _ = self._open(
                    urllib.request.Request(url, method="HEAD", headers=headers_out)
                )
        if status == 404:
            return None
        if status != 200:
            raise BuildError(
                f"OCI registry {self.host}: manifest {repository}:{reference} gave HTTP {status}"
            )
        return headers.get("Docker-Content-Digest") or headers.get("docker-content-digest")

    def _anonymous_token(self, challenge: str) -> str | None:
        if not challenge.lower().startswith("bearer "):
            return None
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm or not realm.startswith("https://"):
            return None
        query = urllib.parse.urlencode(params)
        status, _, body = self._open(urllib.request.Request(f"{realm}?{query}"))
        if status != 200:
            return None
        data = json.loads(body or b"{}")
        token = data.get("token") or data.get("access_token")
        return str(token) if token else None


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
DEFAULT_REGISTRY = "registry-1.docker.io"


def parse_reference(ref: str) -> tuple[str, str, str]:
    """`host[:port]/repo[:tag][@digest]` -> (host, repository, tag or digest), with
    Docker's defaults: no host means Docker Hub (`library/` for single names), no tag
    means `latest`."""
    name, _, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DEFAULT_REGISTRY, name
        if "/" not in path:
            path = f"library/{path}"
    repository, colon, tag = path.rpartition(":") if ":" in path else (path, "", "")
    if not colon:
        repository, tag = path, "latest"
    return host, repository, digest or tag


def _is_loopback(host: str) -> bool:
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return hostname == "localhost" or hostname.startswith("127.")


def resolve(ref: str, timeout: float = 5.0) -> str | None:
    """The manifest digest ``ref`` points to now (None: no such tag). A reference pinned
    by digest resolves to itself. Raises BuildError when its registry cannot be asked."""
    host, repository, reference = parse_reference(ref)
    if reference.startswith("sha256:"):
        return reference
    # Docker talks plain HTTP to loopback registries only; everything else is HTTPS.
    scheme = "http" if _is_loopback(host) else "https"
    return OciRegistry(host, timeout=timeout, scheme=scheme).manifest_digest(repository, reference)
