"""Every number a caller can send (query, path, header or body field, nested too) has a lower and an upper
bound within ±2**53, declared in the service's OpenAPI document, so an out-of-range value is a 422 problem
document and never reaches MongoDB (where an integer beyond 64 bits was a 500). A route added later without
bounds fails here."""
from __future__ import annotations

import pytest
from fastapi import FastAPI, Query
from pydantic import BaseModel, Field

from tests.support import SERVICES, apidocs_env

LIMIT = 2**53  # beyond it a JSON number is no longer exact in most clients


def unbounded_numeric_inputs(doc: dict) -> list[str]:
    """Where in `doc`'s parameters and request bodies an integer or number schema lacks a bound within ±LIMIT."""
    schemas = doc.get("components", {}).get("schemas", {})
    found: list[str] = []

    def walk(node, where: str, seen: frozenset):
        if isinstance(node, list):
            for item in node:
                walk(item, where, seen)
            return
        if not isinstance(node, dict):
            return
        if ref := node.get("$ref"):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                walk(schemas[name], f"{where} ({name})", seen | {name})
            return
        if node.get("type") in ("integer", "number"):
            low = node.get("minimum", node.get("exclusiveMinimum"))
            high = node.get("maximum", node.get("exclusiveMaximum"))
            if low is None or high is None or low < -LIMIT or high > LIMIT:
                found.append(f"{where}: minimum {low}, maximum {high}")
        for key, value in node.items():
            if key == "properties":
                for prop, schema in value.items():
                    walk(schema, f"{where}.{prop}", seen)
            elif isinstance(value, (dict, list)):
                walk(value, where, seen)

    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                walk(param.get("schema", {}), f"{method.upper()} {path} {param['in']} {param['name']}", frozenset())
            for media, body in op.get("requestBody", {}).get("content", {}).items():
                walk(body.get("schema", {}), f"{method.upper()} {path} body", frozenset())
    return found


@pytest.fixture(scope="module")
def openapi_documents() -> dict[str, dict]:
    """Each service's OpenAPI document, built offline as `make apidocs` builds it."""
    from servicekit import apidocs

    with pytest.MonkeyPatch.context() as mp:
        apidocs_env(mp)
        return {name: apidocs.documents(name)["openapi.json"] for name in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_every_numeric_input_of_the_service_has_bounds_within_2_to_the_53(openapi_documents, service):
    doc = openapi_documents[service]
    assert doc["paths"], "no routes: the document was not built from the service"
    assert unbounded_numeric_inputs(doc) == []


class Inner(BaseModel):
    count: int = Field(ge=0)                        # no maximum
    share: float = Field(ge=0, le=1)


class Outer(BaseModel):
    items: list[Inner]
    version: int | None = Field(default=None, ge=1, le=2**60)  # beyond 2**53
    by_axis: dict[str, int]                         # numbers as map values


def test_the_bounds_check_finds_unbounded_parameters_and_nested_body_fields():
    app = FastAPI()

    @app.post("/things/{year}")
    def things(year: int, body: Outer, page: int = Query(1, ge=1, le=100)):
        return {}

    found = unbounded_numeric_inputs(app.openapi())
    assert len(found) == 4, found
    assert [f.split(":")[0] for f in found] == ["POST /things/{year} path year",
                                                 "POST /things/{year} body (Outer).items (Inner).count",
                                                 "POST /things/{year} body (Outer).version",
                                                 "POST /things/{year} body (Outer).by_axis"]
