"""Writes the OpenAPI (FastAPI) and AsyncAPI (FastStream) documents of every service next to its code.

    python -m servicekit.apidocs          # rewrite services/<name>/{openapi,asyncapi}.json
    python -m servicekit.apidocs check    # fail if a committed document is out of date
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from pathlib import Path

from faststream.specification import AsyncAPI

from servicekit import registry

SERVICES = registry.names()  # services/registry.toml
ROOT = Path(__file__).resolve().parents[3]


def documents(name: str) -> dict[str, dict]:
    # the documents describe the defaults, not whichever broker or namespace this shell points at
    for var in ("KAFKA_BOOTSTRAP", "MONGO_URI", "MONGO_DB", "TOPIC_PREFIX", "TOPIC_PARTITIONS"):
        os.environ.pop(var, None)
    svc = importlib.import_module(f"{name}_service.app").svc
    asyncapi = AsyncAPI(svc.broker, title=f"SME portal — {name} events", version="1.0.0", schema_version="3.0.0")
    return {"openapi.json": svc.app.openapi(), "asyncapi.json": asyncapi.to_specification().to_jsonable()}


def _dump(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(check: bool) -> int:
    logging.disable(logging.WARNING)
    stale = []
    for name in SERVICES:
        for filename, doc in documents(name).items():
            path = ROOT / "services" / name / filename
            if check:
                if not path.exists() or path.read_text() != _dump(doc):
                    stale.append(str(path.relative_to(ROOT)))
            else:
                path.write_text(_dump(doc))
    if stale:
        print("out of date (run `make apidocs`):", *stale, sep="\n  ")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(check=sys.argv[1:] == ["check"]))
