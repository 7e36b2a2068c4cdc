"""Plain HTTPS to the Azure ML environment API through azure-core's pipeline, with the
credential the SDK uses: the reads (one listing per environment, ``isArchived`` and
``listViewType`` included, registries too) and the small writes (metadata, archive flags)
that the SDK's entities cannot express or would cost extra calls.

Paths follow the published REST API: a workspace at api-version ``2023-04-01-preview``
(what azure-ai-ml 1.35.2 sends), an Azure ML registry through its discovered regional
endpoint (``.../mferp/managementfrontend/...``) at ``2021-10-01-dataplanepreview``, as the
SDK itself does. One connection pool sized for the concurrent calls is shared by every
thread; errors come out as azure-core's exceptions, for azureml_errors to translate.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from reconciler.adapters.azureml_client import (
    AzureTarget,
    make_credential,
    registry_discovery,
    resource_manager,
    response_policy,
)

if TYPE_CHECKING:
    from azure.core import PipelineClient

PROVIDER = "Microsoft.MachineLearningServices"
WORKSPACE_API_VERSION = "2023-04-01-preview"
REGISTRY_API_VERSION = "2021-10-01-dataplanepreview"
DISCOVERY_API_VERSION = "2021-10-01-dataplanepreview"
USER_AGENT = "reconciler"


class RestSession:
    """GET, PUT and listings under one workspace's or registry's resource path."""

    def __init__(
        self,
        target: AzureTarget,
        pool_size: int,
        environ: Mapping[str, str] | None = None,
        credential: Any = None,
    ) -> None:
        self.target = target
        self._environ = environ
        self.credential = credential if credential is not None else make_credential(environ)
        self._pool_size = pool_size
        self._client: PipelineClient[Any, Any] | None = None
        self._base: str | None = None
        self._api_version = (
            REGISTRY_API_VERSION if target.registry is not None else WORKSPACE_API_VERSION
        )
        self._setup = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------

    def _pipeline(self) -> PipelineClient[Any, Any]:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import (
            BearerTokenCredentialPolicy,
            HeadersPolicy,
            UserAgentPolicy,
        )
        from azure.core.pipeline.transport import RequestsTransport
        from requests import Session
        from requests.adapters import HTTPAdapter

        session = Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size)
        session.mount("https://", adapter)
        scope = resource_manager(self._environ).rstrip("/") + "/.default"  # as the SDK asks
        return PipelineClient(
            base_url=resource_manager(self._environ),
            policies=[
                HeadersPolicy(),
                UserAgentPolicy(USER_AGENT),
                BearerTokenCredentialPolicy(self.credential, scope),
                response_policy(),  # status codes counted, as for the SDK's calls
            ],
            transport=RequestsTransport(session=session, session_owner=True),
        )

    @property
    def client(self) -> PipelineClient[Any, Any]:
        with self._setup:
            if self._client is None:
                self._client = self._pipeline()
            return self._client

    def base(self) -> str:
        """The URL of the workspace or registry resource (a registry is discovered once)."""
        with self._setup:
            if self._base is not None:
                return self._base
        target = self.target
        if target.registry is None:
            found = (
                f"{resource_manager(self._environ)}subscriptions/{quote(target.subscription or '')}"
                f"/resourceGroups/{quote(target.resource_group or '')}/providers/{PROVIDER}"
                f"/workspaces/{quote(target.workspace or '')}"
            )
        else:
            discovery = self.request(
                "GET",
                f"{registry_discovery(self._environ)}registrymanagement/v1.0/registries/"
                f"{quote(target.registry)}/discovery",
                {"api-version": DISCOVERY_API_VERSION},
            )
            region = str(discovery["primaryRegionResourceProviderUri"]).rstrip("/") + "/"
            found = (
                f"{region}mferp/managementfrontend/subscriptions/"
                f"{quote(discovery['subscriptionId'])}/resourceGroups/"
                f"{quote(discovery['resourceGroup'])}/providers/{PROVIDER}/registries/"
                f"{quote(target.registry)}"
            )
        with self._setup:
            self._base = found
        return found

    def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """One call; the JSON answer (None when empty). Raises azure-core's errors."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceExistsError,
            ResourceNotFoundError,
            map_error,
        )
        from azure.core.rest import HttpRequest

        request = HttpRequest(method, url, params=dict(params or {}), json=body)
        response = self.client.send_request(request)
        if response.status_code >= 400:
            # the generated clients' error map: the same exception types as the SDK raises
            errors = {
                401: ClientAuthenticationError,
                404: ResourceNotFoundError,
                409: ResourceExistsError,
            }
            map_error(response.status_code, response, errors)
            raise HttpResponseError(response=response)
        return response.json() if response.content else None

    def environments(self, *parts: str) -> str:
        return "/".join([self.base(), "environments", *(quote(p, safe="") for p in parts)])

    # -- calls ------------------------------------------------------------------------

    def get(self, url: str) -> Any:
        return self.request("GET", url, {"api-version": self._api_version})

    def put(self, url: str, body: Any) -> Any:
        return self.request("PUT", url, {"api-version": self._api_version}, body)

    def first_page(self, url: str, view: str = "All") -> tuple[list[Any], str | None]:
        found = self.request("GET", url, {"api-version": self._api_version, "listViewType": view})
        return list(found.get("value") or []), found.get("nextLink")

    def next_page(self, link: str) -> tuple[list[Any], str | None]:
        found = self.request("GET", link)  # nextLink carries its own query
        return list(found.get("value") or []), found.get("nextLink")

    def close(self) -> None:
        with self._setup:
            client, self._client = self._client, None
        if client is not None:
            client.close()
