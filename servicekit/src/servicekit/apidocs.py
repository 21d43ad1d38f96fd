"""Writes the OpenAPI (FastAPI) and AsyncAPI (FastStream) documents of every service next to its code, and the
platform's merged documents the developer portal serves (identity's `/developers/apis`, R-EXT-04): every service's
paths under the gateway's `/api/<service>`, every service's channels, names prefixed by the service so none collide.

    python -m servicekit.apidocs          # rewrite services/<name>/{openapi,asyncapi}.json and the merged documents
    python -m servicekit.apidocs check    # fail if a committed document is out of date
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
from pathlib import Path

from faststream.specification import AsyncAPI

from servicekit import registry

SERVICES = registry.names()  # services/registry.toml
ROOT = Path(__file__).resolve().parents[3]


def documents(name: str) -> dict[str, dict]:
    # the documents describe the defaults, not whichever broker or namespace this shell points at; the rest of the
    # environment counts (identity needs JWT_PRIVATE_KEY_FILE to start)
    for var in ("KAFKA_BOOTSTRAP", "MONGO_URI", "MONGO_DB", "TOPIC_PREFIX", "TOPIC_PARTITIONS"):
        os.environ.pop(var, None)
    svc = importlib.import_module(f"{name}_service.app").create_app().state.service
    asyncapi = AsyncAPI(svc.broker, title=f"SME portal — {name} events", version="1.0.0", schema_version="3.0.0")
    return {"openapi.json": svc.app.openapi(), "asyncapi.json": asyncapi.to_specification().to_jsonable()}


MERGED = ROOT / "services" / "identity" / "src" / "identity_service" / "apis"
INTERNAL_PATHS = ("/healthz", "/readyz", "/metrics")  # not routed by the gateway
CONSENT_WEBHOOK = {"post": {
    "summary": "A business granted or withdrew its consent to your client (R-ID-04, R-EXT-03)",
    "description": "Sent to your client's webhook_url after the change is committed; retried with back-off (2 s "
                   "doubling to 10 min) until your endpoint answers 2xx. The body is a JWT signed with a key of "
                   "/api/identity/jwks.json: verify it, then dedupe on its `jti`.",
    "requestBody": {"required": True, "content": {"application/jwt": {"schema": {
        "type": "string", "description": "claims: iss, aud (your client id), iat, jti (the delivery id), event: "
                                         "{type: ConsentGranted|ConsentWithdrawn, business_id, client_id, occurred_at}"}}}},
    "responses": {"2XX": {"description": "received (later deliveries of the same jti are duplicates)"}}}}


def _renamed(doc, pattern: re.Pattern, prefix: str):
    """`doc` with every local reference matching `pattern` (group 1: the section, 2: the name) prefixed."""
    text = json.dumps(doc)
    return json.loads(pattern.sub(lambda m: f'"#/{m.group(1)}/{prefix}{m.group(2)}"', text))


OPENAPI_REF = re.compile(r'"#/(components/schemas)/([^"]+)"')
ASYNCAPI_REF = re.compile(r'"#/(channels|operations|components/messages|components/schemas)/([^"]+)"')


def merged_openapi(docs: dict[str, dict]) -> dict:
    """One OpenAPI 3.1 document of the platform as the gateway serves it; partner-callable operations (those a
    third-party client's scope opens, not only `portal`) tagged `partner`; the consent webhook under `webhooks`."""
    out = {"openapi": "3.1.0", "info": {"title": "SME support portal: the platform's HTTP APIs", "version": "1.0.0",
                                        "description": "Every service behind the gateway. Operations tagged `partner` "
                                                       "are the ones a third-party client may call, with the scope its "
                                                       "`security` names; the rest need the portal's own tokens."},
           "servers": [{"url": "/"}], "paths": {}, "webhooks": {"consentChanged": CONSENT_WEBHOOK},
           "components": {"schemas": {}, "securitySchemes": {}}, "tags": [{"name": "partner"}]}
    for name, doc in docs.items():
        doc = _renamed(doc, OPENAPI_REF, f"{name}.")
        for schema, body in doc.get("components", {}).get("schemas", {}).items():
            out["components"]["schemas"][f"{name}.{schema}"] = body
        out["components"]["securitySchemes"].update(doc.get("components", {}).get("securitySchemes", {}))
        for path, ops in doc.get("paths", {}).items():
            if path in INTERNAL_PATHS:
                continue
            for op in ops.values():
                op["operationId"] = f"{name}.{op.get('operationId', '')}"
                op["tags"] = [f"{name}: {t}" for t in op.get("tags", [])] or [name]
                if partner_scopes(op):
                    op["tags"].insert(0, "partner")
            out["paths"][f"/api/{name}{path}"] = ops
    return out


def partner_scopes(op: dict) -> list[str]:
    """The scopes under which a third-party client may call an operation (none: the portal's tokens only)."""
    return sorted({s for req in op.get("security", []) for scopes in req.values() for s in scopes} - {"portal"})


def merged_asyncapi(docs: dict[str, dict]) -> dict:
    """One AsyncAPI 3.0 document of every service's channels and operations (`<service>.` before each name)."""
    out = {"asyncapi": "3.0.0", "info": {"title": "SME support portal: the platform's events", "version": "1.0.0"},
           "channels": {}, "operations": {}, "components": {"messages": {}, "schemas": {}}}
    for name, doc in docs.items():
        doc = _renamed(doc, ASYNCAPI_REF, f"{name}.")
        for section in ("channels", "operations"):
            out[section].update({f"{name}.{k}": v for k, v in doc.get(section, {}).items()})
        for section in ("messages", "schemas"):
            out["components"][section].update({f"{name}.{k}": v for k, v in
                                               doc.get("components", {}).get(section, {}).items()})
    return out


def _dump(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(check: bool) -> int:
    logging.disable(logging.WARNING)
    stale, every = [], {}
    for name in SERVICES:
        every[name] = documents(name)
    files = {ROOT / "services" / name / filename: doc for name, docs in every.items() for filename, doc in docs.items()}
    files[MERGED / "platform.openapi.json"] = merged_openapi({n: d["openapi.json"] for n, d in every.items()})
    files[MERGED / "platform.asyncapi.json"] = merged_asyncapi({n: d["asyncapi.json"] for n, d in every.items()})
    for path, doc in files.items():
        if check:
            if not path.exists() or path.read_text() != _dump(doc):
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_dump(doc))
    if stale:
        print("out of date (run `make apidocs`):", *stale, sep="\n  ")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(check=sys.argv[1:] == ["check"]))
