"""The ARM side: workspace, environment containers and versions, datastores.

Paths are ``/subscriptions/S/resourceGroups/R/providers/Microsoft.MachineLearningServices/
{workspaces|registries}/N/...``; the fixed segments are matched case-insensitively, as ARM
does. Registries are also found through the registry discovery call.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from reconciler.emulator.resources import (
    PROVIDER,
    BadRequest,
    Conflict,
    Missing,
    Scope,
    container_resource,
    list_view,
    version_resource,
    visible,
)

if TYPE_CHECKING:
    from reconciler.emulator.http import EmulatorState, Request, Response

DEFAULT_DATASTORE = "workspaceblobstore"
REGISTRY_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
REGISTRY_RESOURCE_GROUP = "emulator"


def route(emulator: EmulatorState, request: Request) -> Response:
    from reconciler.emulator.http import arm_error

    parts = request.path.strip("/").split("/")
    if parts[0].lower() == "registrymanagement":
        return _discovery(emulator, request, parts)
    if (
        len(parts) < 8
        or parts[2].lower() != "resourcegroups"
        or parts[4].lower() != "providers"
        or parts[5].lower() != PROVIDER.lower()
        or parts[6].lower() not in ("workspaces", "registries")
    ):
        return arm_error(404, "NotFound", f"no such resource {request.path}")
    scope = Scope(parts[6].lower(), parts[1], parts[3], parts[7])
    rest = parts[8:]
    try:
        return _resource(emulator, request, scope, rest)
    except Missing as exc:
        return arm_error(404, "ResourceNotFound", str(exc))
    except Conflict as exc:
        return arm_error(409, "Conflict", str(exc))
    except BadRequest as exc:
        return arm_error(400, "UserError", str(exc))


def _resource(emulator: EmulatorState, request: Request, scope: Scope, rest: list[str]) -> Response:
    from reconciler.emulator.http import Response, arm_error

    method = request.method
    store = emulator.store
    if not rest and method == "GET":
        return Response.json(200, _scope_resource(emulator, scope))
    if rest[:1] == ["environments"]:
        if len(rest) == 1 and method == "GET":
            view = list_view(request.query)
            prefix = scope.key + "/"
            shown = store.listing(scope, view)
            return emulator.page(
                request,
                shown,
                lambda c: _container(emulator, scope, c.name.removeprefix(prefix), c),
            )
        name = rest[1]
        if len(rest) == 2 and method == "GET":
            return Response.json(200, _container(emulator, scope, name))
        if len(rest) == 2 and method == "PUT":
            container, created = store.put_container(scope, name, _body(request))
            body = _container(emulator, scope, name, container)
            return Response.json(201 if created else 200, body)
        if len(rest) == 2 and method == "DELETE":
            return _delete(_exists(store.container, scope, name), f"environment {name!r}")
        if len(rest) == 3 and rest[2] == "versions" and method == "GET":
            view = list_view(request.query)
            return emulator.page(request, _versions(emulator, request, scope, name, view))
        if len(rest) == 4 and rest[2] == "versions":
            version = rest[3]
            if method == "GET":
                found = store.version(scope, name, version)
                return Response.json(200, _version(emulator, scope, name, found))
            if method == "PUT":
                stored, created = store.put_version(scope, name, version, _body(request))
                body = _version(emulator, scope, name, stored)
                return Response.json(201 if created else 200, body)
            if method == "DELETE":
                exists = _exists(store.version, scope, name, version)
                return _delete(exists, f"environment version {name}:{version}")
    if len(rest) == 4 and rest[0] == "tempdatarefs" and method == "PUT":
        return Response.json(200, _temporary_reference(emulator, scope, rest[1], rest[3]))
    if rest[:1] == ["datastores"] and scope.kind == "workspaces":
        return _datastores(emulator, request, scope, rest)
    return arm_error(
        405 if rest[:1] in (["environments"], ["datastores"]) else 404,
        "NotSupported",
        f"the emulator does not serve {method} {request.path}",
    )


def _body(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _exists(lookup: Any, *args: Any) -> bool:
    try:
        lookup(*args)
    except Missing:
        return False
    return True


def _delete(exists: bool, what: str) -> Response:
    """``DELETE``: the spec's ``204 No Content`` for what is not there; environments that
    exist are archived, never deleted, so deleting one is refused with an ARM error."""
    from reconciler.emulator.http import Response, arm_error

    if not exists:
        return Response(204)
    return arm_error(
        409,
        "UserError",
        f"{what} cannot be deleted: environments are archived (PUT with isArchived true), "
        "never deleted",
    )


def _container(
    emulator: EmulatorState, scope: Scope, name: str, container: Any = None
) -> dict[str, Any]:
    store = emulator.store
    found = container if container is not None else store.container(scope, name)
    return container_resource(scope, name, found, store.container_attributes(scope, name))


def _version(emulator: EmulatorState, scope: Scope, name: str, version: Any) -> dict[str, Any]:
    attributes = emulator.store.version_attributes(scope, name, version.version)
    return version_resource(scope, name, version, attributes)


def _versions(
    emulator: EmulatorState, request: Request, scope: Scope, name: str, view: str
) -> list[dict[str, Any]]:
    container = emulator.store.container(scope, name)
    versions = list(container.versions)  # creation order
    order = request.query.get("$orderBy", "").lower()
    if order.endswith("desc"):
        versions.reverse()
    return [
        _version(emulator, scope, name, v)
        for v in versions
        if visible(v.archived or container.archived, view)
    ]


def _scope_resource(emulator: EmulatorState, scope: Scope) -> dict[str, Any]:
    guid = str(uuid.uuid5(uuid.NAMESPACE_URL, scope.key))
    return {
        "id": scope.arm_id,
        "name": scope.name,
        "type": f"{PROVIDER}/{scope.kind}",
        "location": "local",
        "tags": {},
        "properties": {
            "workspaceId": guid,
            "friendlyName": scope.name,
            "discoveryUrl": emulator.base_url,
            "provisioningState": "Succeeded",
            "storageAccount": f"{scope.arm_id}/storageAccounts/emulator",
        },
    }


def _container_name(scope: Scope) -> str:
    return "azureml-blobstore-" + str(uuid.uuid5(uuid.NAMESPACE_URL, scope.key))


def _datastore(emulator: EmulatorState, scope: Scope) -> dict[str, Any]:
    from reconciler.emulator.http import BLOB_ACCOUNT

    host = emulator.base_url.removeprefix("https://").rstrip("/")
    return {
        "id": f"{scope.arm_id}/datastores/{DEFAULT_DATASTORE}",
        "name": DEFAULT_DATASTORE,
        "type": f"{PROVIDER}/workspaces/datastores",
        "properties": {
            "datastoreType": "AzureBlob",
            # The SDK builds the account URL as https://{account}.blob.{endpoint}; this
            # account name turns that into https://127.0.0.1:PORT/<account>#..., a
            # path-style URL on this server (the fragment swallows the suffix).
            "accountName": f"{host}/{BLOB_ACCOUNT}#",
            "containerName": _container_name(scope),
            "endpoint": "core.windows.net",
            "protocol": "https",
            "credentials": {"credentialsType": "Sas"},
            "isDefault": True,
            "serviceDataAccessAuthIdentity": "None",
            "description": "the emulator's blob store",
            "tags": {},
            "properties": {},
        },
    }


def _temporary_reference(
    emulator: EmulatorState, scope: Scope, name: str, version: str
) -> dict[str, Any]:
    """Where a registry asset's files go: a SAS URL of a blob container on this server."""
    from reconciler.emulator.http import BLOB_ACCOUNT

    container = f"{emulator.base_url}{BLOB_ACCOUNT}/{_container_name(scope)}"
    return {
        "blobReferenceForConsumption": {
            "blobUri": container,
            "storageAccountArmId": f"{scope.arm_id}/storageAccounts/emulator",
            "credential": {"credentialType": "SAS", "sasUri": f"{container}?{emulator.sas}"},
        },
        "temporaryDataReferenceId": f"{name}-{version}",
        "temporaryDataReferenceType": "TemporaryBlobReference",
    }


def _datastores(
    emulator: EmulatorState, request: Request, scope: Scope, rest: list[str]
) -> Response:
    from reconciler.emulator.http import Response, arm_error

    if len(rest) == 1 and request.method == "GET":
        return emulator.page(request, [_datastore(emulator, scope)])
    if rest[1] != DEFAULT_DATASTORE:
        return arm_error(
            404,
            "ResourceNotFound",
            f"datastore {rest[1]!r} not found (the emulator has only {DEFAULT_DATASTORE!r})",
        )
    if len(rest) == 2 and request.method == "GET":
        return Response.json(200, _datastore(emulator, scope))
    if len(rest) == 3 and rest[2] == "listSecrets" and request.method == "POST":
        return Response.json(200, {"secretsType": "Sas", "sasToken": emulator.sas})
    return arm_error(405, "NotSupported", f"the emulator does not serve {request.method} here")


def _discovery(emulator: EmulatorState, request: Request, parts: list[str]) -> Response:
    from reconciler.emulator.http import Response, arm_error

    # /registrymanagement/v1.0/registries/{name}/discovery
    if len(parts) == 5 and parts[2].lower() == "registries" and parts[4] == "discovery":
        return Response.json(
            200,
            {
                "registryName": parts[3],
                "primaryRegion": "local",
                "regions": ["local"],
                "subscriptionId": REGISTRY_SUBSCRIPTION,
                "resourceGroup": REGISTRY_RESOURCE_GROUP,
                "primaryRegionResourceProviderUri": emulator.base_url,
            },
        )
    return arm_error(404, "NotFound", f"no such resource {request.path}")
