"""The AsyncAPI document's JSON Schemas as validators: tests check every frame they receive.

``support.receive_json`` calls :func:`check_server_frame` on every frame it decodes, so each
integration test that reads a frame also checks the published protocol against the server.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

DOCUMENT_URI = "urn:trio-broadcast:asyncapi"


def load_document() -> dict[str, Any]:
    """The packaged AsyncAPI document (the one ``GET /asyncapi.json`` serves)."""
    text = (resources.files("trio_broadcast") / "wire" / "asyncapi.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


@cache
def validator(schema_name: str) -> Draft7Validator:
    """A validator for ``#/components/schemas/<schema_name>``, its ``$ref``s resolved in place.

    AsyncAPI 3's default schema format is a superset of JSON Schema draft 7.
    """
    resource: Resource[Any] = DRAFT7.create_resource(load_document())
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    schema = {"$ref": f"{DOCUMENT_URI}#/components/schemas/{schema_name}"}
    return Draft7Validator(schema, registry=registry)


def check_server_frame(frame: dict[str, Any]) -> None:
    """Fail (AssertionError) when ``frame`` is not a server frame the document describes."""
    errors = sorted(validator("ServerFrame").iter_errors(frame), key=lambda e: list(e.path))
    if errors:
        # oneOf explains little on its own: validate against the schema its type names.
        schemas = load_document()["components"]["schemas"]
        named = str(frame.get("type", "")).capitalize()
        typed = validator(named if named in schemas else "ServerFrame")
        detail = "; ".join(error.message for error in typed.iter_errors(frame))
        raise AssertionError(f"frame does not match docs/asyncapi.json: {detail}: {frame}")


def check_client_frame(frame: dict[str, Any]) -> None:
    """Fail when ``frame`` is not a publish the document describes."""
    errors = [error.message for error in validator("Publish").iter_errors(frame)]
    if errors:
        raise AssertionError(f"publish does not match docs/asyncapi.json: {errors}: {frame}")
