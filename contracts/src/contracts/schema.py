"""JSON Schema export of every contract, and the backward-compatibility check against committed snapshots.

    python -m contracts.schema check     # fails on an incompatible change without a version bump
    python -m contracts.schema write     # refreshes the snapshots (commit them)

A snapshot is `contracts/schemas/<message_type>.v<version>.json`. For the same version, a change is
compatible only if it adds optional properties or edits descriptions; removing or retyping a
property, or making one required, needs `version` + 1 (and then a new snapshot file).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from contracts.envelope import Envelope, Message
from contracts.registry import message_types

SNAPSHOT_DIR = Path(__file__).resolve().parents[2] / "schemas"
_COSMETIC = {"description", "title", "default", "examples"}


def schema_of(model: type[Message]) -> dict:
    s = model.model_json_schema()
    s["x-message-type"] = model.message_type
    s["x-version"] = model.version
    s["x-topic"] = model.topic
    s["x-key"] = model.key_field
    return s


def export() -> dict[str, dict]:
    out = {f"{m.message_type}.v{m.version}": schema_of(m) for m in message_types().values()}
    out["Envelope"] = Envelope.model_json_schema()
    return out


def _strip(node):
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in _COSMETIC}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def incompatibilities(old: dict, new: dict) -> list[str]:
    """Why `new` cannot replace `old` under the same version (empty list: compatible)."""
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_schema in old_props.items():
        if name not in new_props:
            problems.append(f"property '{name}' was removed")
        elif _strip(old_schema) != _strip(new_props[name]):
            problems.append(f"property '{name}' changed type or constraints")
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append(f"property '{name}' is newly required")
    if _strip(old.get("$defs", {})) != _strip(new.get("$defs", {})):
        for d in set(old.get("$defs", {})) & set(new.get("$defs", {})):
            problems += [f"{d}: {p}" for p in incompatibilities(old["$defs"][d], new["$defs"][d])]
    return problems


def check(snapshot_dir: Path = SNAPSHOT_DIR, current: dict[str, dict] | None = None) -> list[str]:
    current = export() if current is None else current
    problems = []
    for name, schema in current.items():
        path = snapshot_dir / f"{name}.json"
        if not path.exists():
            problems.append(f"{name}: no committed snapshot (run `python -m contracts.schema write`)")
            continue
        for p in incompatibilities(json.loads(path.read_text()), schema):
            problems.append(f"{name}: {p} — bump its version")
    return problems


def write(snapshot_dir: Path = SNAPSHOT_DIR) -> None:
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    for name, schema in export().items():
        (snapshot_dir / f"{name}.json").write_text(json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "check"
    if cmd == "write":
        write()
    else:
        found = check()
        print("\n".join(found) or "contracts: all schemas compatible with their snapshots")
        sys.exit(1 if found else 0)
