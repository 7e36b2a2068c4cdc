"""Which Azure ML workspace or registry an ``azureml://`` URL names, and an ``MLClient``
for it: the public cloud with ``DefaultAzureCredential``, or any endpoint that speaks the
same API (the emulator) with a static token.

- ``RECONCILER_AZUREML_ENDPOINT``: the Resource Manager endpoint to use instead of
  ``https://management.azure.com/`` (the registry discovery endpoint too);
- ``RECONCILER_AZUREML_TOKEN``: a bearer token sent as is, instead of
  ``DefaultAzureCredential`` (for the emulator: real tokens expire);
- ``REQUESTS_CA_BUNDLE``: the CA that signs the endpoint's certificate, as for any
  ``requests`` client.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from reconciler.core.spec.registry_url import AZUREML_FORMS, BadRegistryURL, RegistryURL
from reconciler.core.spec.registry_url import parse_registry_url as parse_url
from reconciler.ports import RegistryError

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

ENDPOINT_VARIABLE = "RECONCILER_AZUREML_ENDPOINT"
TOKEN_VARIABLE = "RECONCILER_AZUREML_TOKEN"
# A workspace (subscription, resource group, workspace) or a registry (name).
AzureTarget = RegistryURL


def parse_registry_url(url: str | RegistryURL) -> RegistryURL:
    if isinstance(url, RegistryURL):
        parsed = url
    else:
        try:
            parsed = parse_url(url)
        except BadRegistryURL as exc:
            raise RegistryError(str(exc)) from None
    if parsed.kind != "azureml":
        raise RegistryError(f"{url}: {AZUREML_FORMS}")
    return parsed


class StaticToken:
    """A fixed bearer token, for the emulator (anything with ``get_token`` will do)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)


def _cloud_settings(endpoint: str) -> dict[str, Any]:
    # One cloud name per endpoint: the SDK keeps clouds in a process-wide table.
    base = endpoint.rstrip("/") + "/"
    name = "reconciler-" + hashlib.sha256(base.encode()).hexdigest()[:12]
    return {
        "cloud": name,
        "cloud_metadata": {
            "azure_portal": base,
            "resource_manager": base,
            "active_directory": base,
            "aml_resource_id": base,
            "storage_endpoint": "core.windows.net",
            "registry_discovery_endpoint": base,
        },
    }


# Called with the HTTP status code of every response the SDK receives (`serve` counts them
# in reconciler_registry_requests_total).
_RESPONSE_OBSERVERS: list[Callable[[int], None]] = []


def observe_responses(observer: Callable[[int], None]) -> None:
    _RESPONSE_OBSERVERS.append(observer)


def response_policy() -> Any:
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class ResponseCodes(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_response(self, request: Any, response: Any) -> None:
            code = response.http_response.status_code
            for observer in _RESPONSE_OBSERVERS:
                observer(code)

    return ResponseCodes()


PUBLIC_RESOURCE_MANAGER = "https://management.azure.com/"
PUBLIC_REGISTRY_DISCOVERY = "https://eastus.api.azureml.ms/"


def make_credential(environ: Mapping[str, str] | None = None) -> Any:
    """The credential the SDK and the REST reads share: the static token of
    ``RECONCILER_AZUREML_TOKEN``, else ``DefaultAzureCredential`` (az login, a service
    principal's variables, a workload identity, a managed identity)."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_VARIABLE)
    if token:
        return StaticToken(token)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def resource_manager(environ: Mapping[str, str] | None = None) -> str:
    """The Resource Manager endpoint, with a trailing slash."""
    env = os.environ if environ is None else environ
    return (env.get(ENDPOINT_VARIABLE) or PUBLIC_RESOURCE_MANAGER).rstrip("/") + "/"


def registry_discovery(environ: Mapping[str, str] | None = None) -> str:
    """Where an Azure ML registry's region and resource group are looked up."""
    env = os.environ if environ is None else environ
    return (env.get(ENDPOINT_VARIABLE) or PUBLIC_REGISTRY_DISCOVERY).rstrip("/") + "/"


def make_client(
    target: AzureTarget, environ: Mapping[str, str] | None = None, credential: Any = None
) -> MLClient:
    from azure.ai.ml import MLClient

    env = os.environ if environ is None else environ
    if credential is None:
        credential = make_credential(env)
    # The engine retries transient errors itself, with its own backoff: the SDK's own
    # retries would multiply them.
    kwargs: dict[str, Any] = {
        "retry_total": 0,
        "show_progress": False,
        "enable_telemetry": False,
        # One policy, not a list: the ARM client appends its own to a list it is given.
        "per_call_policies": response_policy(),
    }
    endpoint = env.get(ENDPOINT_VARIABLE)
    if endpoint:
        kwargs.update(_cloud_settings(endpoint))
    if target.registry is not None:
        return MLClient(credential, registry_name=target.registry, **kwargs)
    return MLClient(
        credential,
        subscription_id=target.subscription,
        resource_group_name=target.resource_group,
        workspace_name=target.workspace,
        **kwargs,
    )
