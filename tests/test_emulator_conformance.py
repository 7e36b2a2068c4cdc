"""The emulator against Microsoft's published spec for api-version 2023-04-01-preview
(vendored under tests/azureml_spec): every environment container and version operation
of workspaces and registries is replayed from its example (or, where the example file is
not vendored, from the operation's declared parameters), every response body is
validated against the operation's declared schema, every property the spec declares
round-trips, and each property's mutability is the spec's.

Deliberate differences from the examples, each asserted rather than skipped:
- an environment version needs exactly one of ``image`` and ``build`` (the service's
  documented rule; the examples fill every field), so a body with both is answered 400
  with an ARM error and is replayed once per alternative;
- ``DELETE`` of an existing container or version is refused (409, ARM error body):
  environments are archived, never deleted; deleting what is not there is the spec's 204;
- ``$skipToken`` is opaque: the examples' placeholder value is not replayed, paging is
  exercised with the ``nextLink`` the emulator returns;
- a version's asset ``properties`` dictionary is kept as content (immutable), stricter
  than the spec, which marks no mutability for it.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from reconciler.emulator.server import RunningEmulator
from tests.spec_support import API_VERSION, Example, examples, spec

# Operations whose example file the spec names but could not be vendored.
UNVENDORED = {
    "EnvironmentContainers_List",
    "EnvironmentVersions_Delete",
    "RegistryEnvironmentVersions_Get",
    "RegistryEnvironmentVersions_Delete",
}
# Stricter than the spec, on purpose (see the module docstring).
KEPT_AS_CONTENT = {"properties"}


class Client:
    """Plain HTTPS calls to the emulator, in a workspace and a registry of their own."""

    def __init__(self, running: RunningEmulator) -> None:
        self.running = running
        suffix = uuid.uuid4().hex[:8]
        self.workspace = f"ws{suffix}"
        self.registry = f"reg{suffix}"
        self.subscription = "00000000-1111-2222-3333-444444444444"
        self.context = ssl.create_default_context(cafile=str(running.tls.ca))

    def fill(self, template: str, parameters: dict[str, Any]) -> str:
        values = {  # the examples' names, in a workspace and registry of this test's own
            **{k: v for k, v in parameters.items() if isinstance(v, str)},
            "subscriptionId": self.subscription,
            "resourceGroupName": "rg",
            "workspaceName": self.workspace,
            "registryName": self.registry,
        }
        path = template
        for name, value in values.items():
            path = path.replace("{" + name + "}", value)
        assert "{" not in path, path
        return path

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        query = {"api-version": API_VERSION, **(query or {})}
        url = self.running.endpoint.rstrip("/") + path + "?" + urlencode(query)
        return self.raw(method, url, body)

    def raw(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.running.emulator.token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


@pytest.fixture
def client(emulator: RunningEmulator) -> Client:
    return Client(emulator)


def checked(
    client: Client, operation_id: str, parameters: dict[str, Any], body: Any = None, **query: Any
) -> tuple[int, Any]:
    """Call an operation; its status must be declared and its body valid for it."""
    method, template, operation = spec().operation(operation_id)
    status, answer = client.call(method, client.fill(template, parameters), body, query)
    declared = set(operation["responses"]) - {"default"}
    assert str(status) in declared or status >= 400, (operation_id, status, answer)
    schema = spec().response_schema(operation, status)
    if schema is not None:
        spec().validate(schema, answer)
    elif status < 400:
        assert answer is None, f"{operation_id} {status} declares no body"
    return status, answer


def writable(properties: dict[str, Any]) -> dict[str, Any]:
    """A response's properties as a request body: read-only fields dropped."""
    read_only = {
        name
        for name, schema in spec().definition("EnvironmentVersion")["properties"].items()
        if schema.get("readOnly")
    } | {"latestVersion", "nextVersion"}
    return {k: v for k, v in properties.items() if k not in read_only}


def without(properties: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in properties.items() if k not in fields}


def same_fields(sent: dict[str, Any], returned: dict[str, Any]) -> None:
    for field, value in sent.items():
        assert returned.get(field) == value, (field, value, returned.get(field))


# -- the spec and its examples ----------------------------------------------------------


def test_the_vendored_spec_has_the_environment_operations_and_validates_strictly() -> None:
    operations = {operation["operationId"] for _, _, operation in spec().operations()}
    assert len(operations) == 16  # 8 in workspaces, 8 in registries
    assert {e.operation_id for e in examples() if not e.vendored} == UNVENDORED
    good = {"properties": {"image": "busybox", "autoRebuild": "OnBaseImageUpdate"}}
    spec().validate_definition("EnvironmentVersionResource", good)
    for bad in (
        {"properties": {"image": "busybox", "unknownField": 1}},  # additionalProperties
        {"properties": {"autoRebuild": "Sometimes"}},  # enum
        {"properties": {"build": {"dockerfilePath": "Dockerfile"}}},  # required contextUri
        {"properties": {"stage": 3}},
        {"properties": {}, "systemData": {"createdAt": "yesterday"}},  # date-time
    ):
        with pytest.raises(AssertionError, match="not valid against the spec"):
            spec().validate_definition("EnvironmentVersionResource", bad)
    spec().validate_definition("EnvironmentVersionResource", {"properties": {"stage": None}})


@pytest.mark.parametrize("example", [e for e in examples() if e.vendored], ids=lambda e: e.title)
def test_example_responses_are_valid_against_the_spec(example: Example) -> None:
    _, _, operation = spec().operation(example.operation_id)
    for status, response in example.load()["responses"].items():
        schema = spec().response_schema(operation, int(status))
        if "body" in response:
            assert schema is not None
            spec().validate(schema, response["body"])


# -- replay: one scenario per operation --------------------------------------------------


def example_for(operation_id: str) -> dict[str, Any] | None:
    for example in examples():
        if example.operation_id == operation_id and example.vendored:
            return example.load()
    return None


def container_names(operation_id: str) -> dict[str, str]:
    name_field = "environmentName" if operation_id.startswith("Registry") else "name"
    return {name_field: "testEnvironment"}


def replay_container_put(client: Client, operation_id: str) -> None:
    example = example_for(operation_id)
    assert example is not None
    parameters = example["parameters"]
    status, created = checked(client, operation_id, parameters, parameters["body"])
    assert status == 201
    sent = parameters["body"]["properties"]
    same_fields(sent, created["properties"])
    expected = example["responses"]["201"]["body"]
    assert created["name"] == expected["name"] and created["type"] == expected["type"]
    status, again = checked(client, operation_id, parameters, parameters["body"])
    assert status == 200
    same_fields(sent, again["properties"])


def seed_container(client: Client, operation_id: str, properties: dict[str, Any]) -> None:
    put = operation_id.rsplit("_", 1)[0] + "_CreateOrUpdate"
    status, _ = checked(client, put, container_names(operation_id), {"properties": properties})
    assert status in (200, 201)


def replay_container_get(client: Client, operation_id: str) -> None:
    example = example_for(operation_id)
    assert example is not None
    expected = example["responses"]["200"]["body"]
    seed_container(client, operation_id, writable(expected["properties"]))
    status, found = checked(client, operation_id, example["parameters"])
    assert status == 200 and found["name"] == expected["name"]
    assert found["type"] == expected["type"]
    same_fields(expected["properties"], found["properties"])


def replay_container_list(client: Client, operation_id: str) -> None:
    example = example_for(operation_id)
    expected: dict[str, Any] = (
        example["responses"]["200"]["body"]["value"][0]
        if example
        else {"name": "testEnvironment", "properties": {"description": "d", "tags": {"t": "v"}}}
    )
    seed_container(client, operation_id, writable(expected["properties"]))
    parameters = example["parameters"] if example else {}
    status, page = checked(client, operation_id, parameters)  # $skipToken: see docstring
    assert status == 200
    listed = {item["name"]: item for item in page["value"]}
    same_fields(expected["properties"], listed[expected["name"]]["properties"])


def replay_delete(client: Client, operation_id: str, parameters: dict[str, Any]) -> None:
    status, body = checked(client, operation_id, parameters)
    assert status == 204 and body is None  # nothing there: the spec's No Content
    kind = "Version" if "Versions" in operation_id else "Container"
    put = operation_id.replace("_Delete", "_CreateOrUpdate")
    get = operation_id.replace("_Delete", "_Get")
    properties = {"description": "kept"}
    if kind == "Version":
        properties["image"] = "busybox:1.36"
    assert checked(client, put, parameters, {"properties": properties})[0] == 201
    status, error = checked(client, operation_id, parameters)
    assert status == 409 and "never deleted" in error["error"]["message"]
    status, kept = checked(client, get, parameters)
    assert status == 200 and kept["properties"]["description"] == "kept"


def version_parameters(operation_id: str, version: str = "string") -> dict[str, str]:
    return {**container_names(operation_id), "version": version}


def replay_version_put(client: Client, operation_id: str) -> None:
    example = example_for(operation_id)
    assert example is not None
    parameters = example["parameters"]
    body = parameters["body"]
    status, error = checked(client, operation_id, parameters, body)
    assert status == 400 and "exactly one of image and build" in error["error"]["message"]
    expected = example["responses"]["201"]["body"]["properties"]
    alternatives = {
        "1": without(body["properties"], "build"),
        "2": without(body["properties"], "image", "condaFile"),
    }
    for version, properties in alternatives.items():
        at = {**parameters, "version": version}
        status, created = checked(client, operation_id, at, {"properties": properties})
        assert status == 201
        same_fields(properties, created["properties"])
        returned = without(expected, "environmentType", "image", "condaFile", "build")
        same_fields(returned, created["properties"])
        assert created["properties"]["environmentType"] in ("Curated", "UserCreated")
        status, again = checked(client, operation_id, at, {"properties": properties})
        assert status == 200


def seed_version(client: Client, operation_id: str, properties: dict[str, Any]) -> None:
    put = operation_id.rsplit("_", 1)[0] + "_CreateOrUpdate"
    status, _ = checked(client, put, version_parameters(operation_id), {"properties": properties})
    assert status in (200, 201)


def example_version(operation_id: str, listing: bool) -> dict[str, Any]:
    example = example_for(operation_id)
    if example is None:  # the workspace example stands in: the model is the same
        example = example_for(operation_id.removeprefix("Registry").replace("_List", "_Get"))
        assert example is not None
        listing = False
    body = example["responses"]["200"]["body"]
    found: dict[str, Any] = body["value"][0] if listing else body
    return found


def replay_version_get(client: Client, operation_id: str) -> None:
    expected = example_version(operation_id, listing=False)["properties"]
    properties = without(writable(expected), "build")  # one of image and build
    seed_version(client, operation_id, properties)
    status, found = checked(client, operation_id, version_parameters(operation_id))
    assert status == 200
    same_fields(properties, found["properties"])


def replay_version_list(client: Client, operation_id: str) -> None:
    example = example_for(operation_id)
    assert example is not None
    expected = example_version(operation_id, listing=True)["properties"]
    properties = without(writable(expected), "build")
    seed_version(client, operation_id, properties)
    seed_version_at = version_parameters(operation_id, "other")
    put = operation_id.replace("_List", "_CreateOrUpdate")
    assert checked(client, put, seed_version_at, {"properties": properties})[0] == 201
    query = {k: v for k, v in example["parameters"].items() if k in ("$orderBy", "$top")}
    status, page = checked(client, operation_id, container_names(operation_id), **query)
    assert status == 200 and len(page["value"]) == example["parameters"]["$top"] == 1
    same_fields(properties, page["value"][0]["properties"])
    status, everything = checked(client, operation_id, container_names(operation_id))
    assert [v["name"] for v in everything["value"]] == ["string", "other"]


SCENARIOS: dict[str, Callable[[Client, str], None]] = {
    "EnvironmentContainers_CreateOrUpdate": replay_container_put,
    "EnvironmentContainers_Get": replay_container_get,
    "EnvironmentContainers_List": replay_container_list,
    "EnvironmentContainers_Delete": lambda c, o: replay_delete(c, o, container_names(o)),
    "EnvironmentVersions_CreateOrUpdate": replay_version_put,
    "EnvironmentVersions_Get": replay_version_get,
    "EnvironmentVersions_List": replay_version_list,
    "EnvironmentVersions_Delete": lambda c, o: replay_delete(c, o, version_parameters(o)),
}
SCENARIOS.update({"Registry" + k: v for k, v in list(SCENARIOS.items())})


def test_every_operation_of_the_spec_has_a_scenario() -> None:
    assert {o["operationId"] for _, _, o in spec().operations()} == set(SCENARIOS)


@pytest.mark.parametrize("operation_id", sorted(SCENARIOS))
def test_replay(client: Client, operation_id: str) -> None:
    SCENARIOS[operation_id](client, operation_id)


# -- every declared property round-trips, with the spec's mutability ---------------------


def full_versions() -> dict[str, dict[str, Any]]:
    """Two versions that between them set every writable property the spec declares."""
    common = {
        "description": "every field",
        "tags": {"team": "ml"},
        "properties": {"origin": "test"},
        "isAnonymous": True,
        "isArchived": False,
        "autoDeleteSetting": {"condition": "LastAccessedGreaterThan", "value": "30d"},
        "autoRebuild": "OnBaseImageUpdate",
        "intellectualProperty": {"publisher": "contoso", "protectionLevel": "None"},
        "osType": "Windows",
        "stage": "Development",
        "inferenceConfig": {
            "livenessRoute": {"path": "/live", "port": 5001},
            "readinessRoute": {"path": "/ready", "port": 5001},
            "scoringRoute": {"path": "/score", "port": 5001},
        },
    }
    return {
        "1": {**common, "image": "busybox:1.36", "condaFile": "dependencies: [python=3.11]"},
        "2": {**common, "build": {"contextUri": "https://s/c/", "dockerfilePath": "x/Dockerfile"}},
    }


def writable_fields(definition: str) -> set[str]:
    declared = spec().definition(definition)["properties"]
    return {name for name, schema in declared.items() if not schema.get("readOnly")}


@pytest.mark.parametrize("kind", ["Environment", "RegistryEnvironment"])
def test_every_declared_version_property_round_trips(client: Client, kind: str) -> None:
    versions = full_versions()
    assert set().union(*versions.values()) == writable_fields("EnvironmentVersion")
    for version, properties in versions.items():
        at = version_parameters(kind, version)
        status, created = checked(
            client, f"{kind}Versions_CreateOrUpdate", at, {"properties": properties}
        )
        assert status == 201
        status, found = checked(client, f"{kind}Versions_Get", at)
        same_fields(properties, found["properties"])
    status, listed = checked(client, f"{kind}Versions_List", container_names(kind))
    for item in listed["value"]:
        same_fields(versions[item["name"]], item["properties"])


@pytest.mark.parametrize("kind", ["Environment", "RegistryEnvironment"])
def test_every_declared_container_property_round_trips(client: Client, kind: str) -> None:
    properties = {
        "description": "a container made by PUT",
        "tags": {"owner": "platform"},
        "properties": {"origin": "test"},
        "isArchived": False,
    }
    assert set(properties) == writable_fields("EnvironmentContainer")
    names = container_names(kind)
    status, created = checked(
        client, f"{kind}Containers_CreateOrUpdate", names, {"properties": properties}
    )
    assert status == 201
    same_fields(properties, created["properties"])
    assert created["properties"]["latestVersion"] is None
    status, listed = checked(client, f"{kind}Containers_List", {})
    same_fields(
        properties, {i["name"]: i for i in listed["value"]}["testEnvironment"]["properties"]
    )
    changed = {**properties, "description": "changed", "tags": {"owner": "data"}}
    status, updated = checked(
        client, f"{kind}Containers_CreateOrUpdate", names, {"properties": changed}
    )
    assert status == 200
    same_fields(changed, updated["properties"])
    # the first version keeps the container's description and tags
    at = version_parameters(kind, "1")
    checked(client, f"{kind}Versions_CreateOrUpdate", at, {"properties": {"image": "busybox"}})
    status, found = checked(client, f"{kind}Containers_Get", names)
    same_fields(changed, found["properties"])
    assert (found["properties"]["latestVersion"], found["properties"]["nextVersion"]) == ("1", "2")


def mutability(field: str) -> bool:
    """Whether the spec lets a version's field change after creation."""
    schema = spec().definition("EnvironmentVersion")["properties"][field]
    return "update" in schema.get("x-ms-mutability", ["create", "read", "update"])


CHANGES: dict[str, Any] = {
    "description": "other",
    "tags": {"team": "other"},
    "properties": {"origin": "other"},
    "isAnonymous": False,
    "isArchived": True,
    "autoDeleteSetting": {"condition": "CreatedGreaterThan", "value": "7d"},
    "autoRebuild": "Disabled",
    "intellectualProperty": {"publisher": "fabrikam", "protectionLevel": "All"},
    "osType": "Linux",
    "stage": "Production",
    "inferenceConfig": {"scoringRoute": {"path": "/other", "port": 1}},
    "image": "busybox:1.37",
    "condaFile": "dependencies: [python=3.12]",
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_version_fields_change_as_the_spec_says(client: Client, field: str) -> None:
    original = full_versions()["1"]
    at = version_parameters("Environment", "1")
    assert (
        checked(client, "EnvironmentVersions_CreateOrUpdate", at, {"properties": original})[0]
        == 201
    )
    changed = {**original, field: CHANGES[field]}
    if field == "isArchived":  # a stage given populates isArchived: archive without one
        changed = without(changed, "stage")
    status, answer = checked(
        client, "EnvironmentVersions_CreateOrUpdate", at, {"properties": changed}
    )
    status_after, found = checked(client, "EnvironmentVersions_Get", at)
    if mutability(field) and field not in KEPT_AS_CONTENT:
        assert status == 200, answer
        assert found["properties"][field] == CHANGES[field]
    else:
        assert status == 409 and answer["error"]["code"] == "Conflict", answer
        assert found["properties"][field] == original[field]  # nothing half-applied
    assert set(CHANGES) >= writable_fields("EnvironmentVersion") - {"build"}


def test_create_only_fields_may_be_left_out_of_an_update(client: Client) -> None:
    """The SDK's updates send neither autoRebuild nor intellectualProperty: both stay."""
    at = version_parameters("RegistryEnvironment", "1")
    original = full_versions()["1"]
    checked(client, "RegistryEnvironmentVersions_CreateOrUpdate", at, {"properties": original})
    update = without(original, "autoRebuild", "intellectualProperty", "stage") | {
        "tags": {"team": "retagged"}
    }
    status, updated = checked(
        client, "RegistryEnvironmentVersions_CreateOrUpdate", at, {"properties": update}
    )
    assert status == 200
    assert updated["properties"]["autoRebuild"] == "OnBaseImageUpdate"
    assert updated["properties"]["intellectualProperty"] == original["intellectualProperty"]
    assert updated["properties"]["stage"] == "Development"  # left out: kept
    assert updated["properties"]["tags"] == {"team": "retagged"}


def test_stage_populates_is_archived(client: Client) -> None:
    at = version_parameters("Environment", "1")
    body = {"properties": {"image": "busybox", "stage": "Archived"}}
    status, created = checked(client, "EnvironmentVersions_CreateOrUpdate", at, body)
    assert created["properties"]["isArchived"] is True
    body["properties"]["stage"] = "Production"
    status, restored = checked(client, "EnvironmentVersions_CreateOrUpdate", at, body)
    assert (restored["properties"]["isArchived"], restored["properties"]["stage"]) == (
        False,
        "Production",
    )


# -- listings honour listViewType, in registries as in workspaces ------------------------


@pytest.mark.parametrize("prefix", ["", "/mferp/managementfrontend"])
def test_registry_listings_honour_list_view_type(client: Client, prefix: str) -> None:
    provider = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
    base = f"{prefix}{provider}/registries/{client.registry}/environments"
    for name in ("kept", "gone", "old"):
        for version in ("1", "2"):
            body = {"properties": {"image": f"busybox:{version}"}}
            assert client.call("PUT", f"{base}/{name}/versions/{version}", body)[0] == 201
    archive = {"properties": {"isArchived": True}}
    assert client.call("PUT", f"{base}/gone", archive)[0] == 200
    assert (
        client.call(
            "PUT",
            f"{base}/old/versions/1",
            {"properties": {"image": "busybox:1", "isArchived": True}},
        )[0]
        == 200
    )

    def names(path: str, view: str | None) -> list[str]:
        status, page = client.call("GET", path, query={"listViewType": view} if view else {})
        assert status == 200, page
        kind = "Versions" if path.endswith("/versions") else "Containers"
        _, _, operation = spec().operation(f"RegistryEnvironment{kind}_List")
        schema = spec().response_schema(operation, 200)
        assert schema is not None
        spec().validate(schema, page)
        found = [item["name"] for item in page["value"]]
        while "nextLink" in page:  # the test emulator's pages hold 2
            status, page = client.raw("GET", page["nextLink"])
            spec().validate(schema, page)
            found += [item["name"] for item in page["value"]]
        return found

    assert names(base, None) == ["kept", "old"]
    assert names(base, "ActiveOnly") == ["kept", "old"]
    assert names(base, "ArchivedOnly") == ["gone"]
    assert names(base, "All") == ["gone", "kept", "old"]
    assert names(f"{base}/old/versions", None) == ["2"]
    assert names(f"{base}/old/versions", "ArchivedOnly") == ["1"]
    assert names(f"{base}/gone/versions", "ArchivedOnly") == ["1", "2"]
    assert names(f"{base}/gone/versions", "All") == ["1", "2"]
    assert names(f"{base}/gone/versions", None) == []
    status, error = client.call("GET", base, query={"listViewType": "Everything"})
    assert status == 400 and "listViewType" in error["error"]["message"]


def test_a_container_created_archived_keeps_its_first_version_archived(client: Client) -> None:
    names = container_names("Environment")
    body = {"properties": {"description": "retired", "isArchived": True}}
    assert checked(client, "EnvironmentContainers_CreateOrUpdate", names, body)[0] == 201
    assert checked(client, "EnvironmentContainers_List", {})[1]["value"] == []
    at = version_parameters("Environment", "1")
    checked(client, "EnvironmentVersions_CreateOrUpdate", at, {"properties": {"image": "busybox"}})
    status, archived = checked(
        client, "EnvironmentVersions_List", names, listViewType="ArchivedOnly"
    )
    assert [v["name"] for v in archived["value"]] == ["1"]
    status, listed = checked(client, "EnvironmentContainers_List", {}, listViewType="ArchivedOnly")
    assert [(c["name"], c["properties"]["description"]) for c in listed["value"]] == [
        ("testEnvironment", "retired")
    ]


def test_paging_follows_next_link_with_valid_pages(client: Client) -> None:
    for index in range(5):  # the test emulator's pages hold 2
        at = {"name": f"e{index}", "version": "1"}
        checked(
            client, "EnvironmentVersions_CreateOrUpdate", at, {"properties": {"image": "busybox"}}
        )
    _, _, operation = spec().operation("EnvironmentContainers_List")
    schema = spec().response_schema(operation, 200)
    assert schema is not None
    status, page = checked(client, "EnvironmentContainers_List", {})
    seen = [item["name"] for item in page["value"]]
    while "nextLink" in page:
        status, page = client.raw("GET", page["nextLink"])
        assert status == 200
        spec().validate(schema, page)
        seen += [item["name"] for item in page["value"]]
    assert seen == ["e0", "e1", "e2", "e3", "e4"]


def test_errors_have_the_arm_error_shape(client: Client) -> None:
    error_schema = {"$ref": "#/definitions/types.ErrorResponse"}
    for method, operation_id, parameters, body in (
        ("GET", "EnvironmentContainers_Get", {"name": "missing"}, None),
        ("PUT", "EnvironmentVersions_CreateOrUpdate", {"name": "e", "version": "1"}, {"x": 1}),
        (
            "PUT",
            "EnvironmentVersions_CreateOrUpdate",
            {"name": "e", "version": "1"},
            {"properties": {"image": "a", "autoRebuild": "Sometimes"}},
        ),
    ):
        status, answer = checked(client, operation_id, parameters, body)
        assert status in (400, 404), (method, answer)
        spec().validate(error_schema, answer)
        assert answer["error"]["code"] and answer["error"]["message"]


def test_the_sdk_archives_and_updates_without_losing_spec_fields(workspace: Any) -> None:
    """azure-ai-ml sends neither stage nor autoRebuild: its updates keep both."""
    client = Client(workspace.running)
    client.workspace = workspace.name  # the SDK's workspace, reached over plain HTTPS too
    client.subscription = "sub"
    at = {"name": "base", "version": "1"}
    body = {
        "properties": {
            "image": "busybox:1.36",
            "stage": "Development",
            "autoRebuild": "OnBaseImageUpdate",
        }
    }
    assert checked(client, "EnvironmentVersions_CreateOrUpdate", at, body)[0] == 201
    ml = workspace.client()
    environment = ml.environments.get("base", "1")
    environment.tags = {"team": "edited"}
    ml.environments.create_or_update(environment)
    ml.environments.archive("base", version="1")
    status, found = checked(client, "EnvironmentVersions_Get", at)
    assert found["properties"]["tags"] == {"team": "edited"}
    assert found["properties"]["isArchived"] is True
    assert (found["properties"]["stage"], found["properties"]["autoRebuild"]) == (
        "Development",
        "OnBaseImageUpdate",
    )
    ml.environments.restore("base", version="1")
    assert checked(client, "EnvironmentVersions_Get", at)[1]["properties"]["isArchived"] is False
