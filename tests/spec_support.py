"""The published Azure ML REST spec (vendored under tests/azureml_spec) as JSON Schema.

Swagger 2.0 schemas are not quite JSON Schema: a model extends its parents with
``allOf`` while saying ``additionalProperties: false`` (which JSON Schema would apply to
its own properties only), and ``x-nullable`` allows ``null``. So every definition is
flattened (the parents' properties and required fields merged in), ``x-nullable``
becomes ``anyOf [..., null]``, and every ``$ref`` (across the spec's files) is resolved
into one document, then checked with jsonschema's Draft 4 validator.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema

SPEC_ROOT = Path(__file__).parent / "azureml_spec"
API_DIR = PurePosixPath(
    "specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices"
    "/preview/2023-04-01-preview"
)
MAIN = API_DIR / "mfe.json"
API_VERSION = "2023-04-01-preview"
ANNOTATIONS = ("readOnly", "x-ms-mutability", "default", "description")


def _load(path: PurePosixPath) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SPEC_ROOT / path).read_text())
    return data


def _resolve(base: PurePosixPath, ref: str) -> tuple[PurePosixPath, str]:
    """``(file, definition name)`` of a ``$ref`` written in ``base``."""
    target, _, pointer = ref.partition("#")
    file = base
    if target:
        parts: list[str] = list(base.parent.parts)
        for part in PurePosixPath(target).parts:
            if part == "..":
                parts.pop()
            elif part != ".":
                parts.append(part)
        file = PurePosixPath(*parts)
    return file, pointer.removeprefix("/definitions/")


def _key(file: PurePosixPath, name: str) -> str:
    return f"{file.name.removesuffix('.json')}.{name}"


class Spec:
    """The vendored spec files, with a validator for any definition or response."""

    def __init__(self) -> None:
        self.files: dict[PurePosixPath, dict[str, Any]] = {}
        self.definitions: dict[str, Any] = {}
        self.files[MAIN] = _load(MAIN)
        done: set[PurePosixPath] = set()
        while set(self.files) - done:  # flattening reads the files the $refs name
            for file in sorted(set(self.files) - done):
                done.add(file)
                for name in self.files[file].get("definitions", {}):
                    self.definitions[_key(file, name)] = self._flatten(file, name)
        self.checker = jsonschema.FormatChecker()
        self.checker.checks("date-time", raises=ValueError)(_date_time)

    @property
    def main(self) -> dict[str, Any]:
        return self.files[MAIN]

    def _file(self, file: PurePosixPath) -> dict[str, Any]:
        if file not in self.files:
            self.files[file] = _load(file)
        return self.files[file]

    def _flatten(self, file: PurePosixPath, name: str) -> dict[str, Any]:
        raw: dict[str, Any] = copy.deepcopy(self._file(file)["definitions"][name])
        properties: dict[str, Any] = {}
        required: list[str] = []
        for parent in raw.pop("allOf", []):
            parent_file, parent_name = _resolve(file, parent["$ref"])
            flat = self._flatten(parent_file, parent_name)
            properties.update(flat.get("properties", {}))
            required += flat.get("required", [])
        for prop, schema in raw.get("properties", {}).items():
            properties[prop] = self._convert(file, schema)
        if properties:
            raw["properties"] = properties
        if required or "required" in raw:
            raw["required"] = sorted(set(required) | set(raw.get("required", [])))
        if isinstance(raw.get("additionalProperties"), dict):
            raw["additionalProperties"] = self._convert(file, raw["additionalProperties"])
        if "items" in raw:
            raw["items"] = self._convert(file, raw["items"])
        return raw

    def _convert(self, file: PurePosixPath, schema: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(schema)
        nullable = out.pop("x-nullable", False)
        if "$ref" in out:
            target_file, target = _resolve(file, out["$ref"])
            self._file(target_file)
            # Draft 4 ignores a $ref's siblings: they stay as the property's annotations.
            kept = {k: v for k, v in out.items() if k in ANNOTATIONS}
            out = {"$ref": f"#/definitions/{_key(target_file, target)}", **kept}
        if isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = self._convert(file, out["additionalProperties"])
        if isinstance(out.get("items"), dict):
            out["items"] = self._convert(file, out["items"])
        if nullable:
            kept = {k: v for k, v in out.items() if k in ANNOTATIONS}
            return {"anyOf": [out, {"type": "null"}], **kept}
        return out

    # -- operations -------------------------------------------------------------------

    def operation(self, operation_id: str) -> tuple[str, str, dict[str, Any]]:
        """``(method, path template, operation)`` of an ``operationId``."""
        for template, methods in self.main["paths"].items():
            for method, operation in methods.items():
                if operation.get("operationId") == operation_id:
                    return method.upper(), template, operation
        raise KeyError(operation_id)

    def operations(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (method.upper(), template, operation)
            for template, methods in self.main["paths"].items()
            for method, operation in methods.items()
        ]

    def response_schema(self, operation: dict[str, Any], status: int) -> dict[str, Any] | None:
        """The declared body schema for a status (``default`` for undeclared errors)."""
        responses = operation["responses"]
        declared = responses.get(str(status))
        if declared is None:
            if status < 400:
                raise AssertionError(f"status {status} is not declared: {sorted(responses)}")
            declared = responses["default"]
        schema = declared.get("schema")
        return None if schema is None else self._convert(MAIN, schema)

    def validate(self, schema: dict[str, Any], instance: Any) -> None:
        document = {**schema, "definitions": self.definitions}
        validator = jsonschema.Draft4Validator(document, format_checker=self.checker)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            details = "; ".join(
                f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors
            )
            raise AssertionError(f"not valid against the spec: {details}")

    def validate_definition(self, name: str, instance: Any) -> None:
        self.validate({"$ref": f"#/definitions/mfe.{name}"}, instance)

    def definition(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.definitions[f"mfe.{name}"]
        return found


def _date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@cache
def spec() -> Spec:
    return Spec()


@dataclass(frozen=True)
class Example:
    """One ``x-ms-examples`` entry of an operation, and whether its file is vendored."""

    operation_id: str
    title: str
    path: PurePosixPath  # relative to the spec root

    @property
    def vendored(self) -> bool:
        return (SPEC_ROOT / self.path).is_file()

    def load(self) -> dict[str, Any]:
        return _load(self.path)


def examples() -> list[Example]:
    found = []
    for _, _, operation in spec().operations():
        for title, ref in operation.get("x-ms-examples", {}).items():
            found.append(
                Example(operation["operationId"], title, API_DIR / PurePosixPath(ref["$ref"]))
            )
    return sorted(found, key=lambda e: str(e.path))
