"""Contract registry and the schema-compatibility check."""
import json
from typing import ClassVar

import pytest
from pydantic import Field

from contracts import TOPICS, Envelope, message_types, topic_of
from contracts.envelope import Message
from contracts.events.identity import BusinessRegistered
from contracts.schema import SNAPSHOT_DIR, check, export, incompatibilities, schema_of


def test_committed_snapshots_match_the_current_contracts():
    assert check() == []


def test_every_message_is_registered_on_its_own_topic_with_a_key():
    for mt, model in message_types().items():
        spec = topic_of(model)
        assert spec.name == model.topic and model.key_field in model.model_fields, mt
        assert spec.partitions >= 1 and spec.dlq == f"{spec.name}.dlq"
    assert set(TOPICS) >= {"identity.events", "experts.events", "dispatch.events", "budget.commands",
                           "budget.events", "ratings.events", "notifications.commands", "recommend.events",
                           "community.events"}


def _variant(**fields):
    """A BusinessRegistered look-alike with some fields changed, for the compatibility check."""
    ns = {"__annotations__": {}, "message_type": "identity.BusinessRegistered", "version": 1}
    ns["__annotations__"].update({"message_type": ClassVar[str], "version": ClassVar[int]})
    base = {n: (f.annotation, f) for n, f in BusinessRegistered.model_fields.items()}
    base.update(fields)
    for name, value in base.items():
        if value is None:
            continue
        ann, default = value
        ns["__annotations__"][name] = ann
        ns[name] = default
    return type("Variant", (Message,), {**ns, "topic": "identity.events", "key_field": "business_id"})


def _snapshot():
    return json.loads((SNAPSHOT_DIR / "identity.BusinessRegistered.v1.json").read_text())


def test_check_fails_on_a_removed_field_without_version_bump():
    broken = schema_of(_variant(prefecture=None))
    assert any("'prefecture' was removed" in p for p in incompatibilities(_snapshot(), broken))
    current = {**export(), "identity.BusinessRegistered.v1": broken}
    assert any("bump its version" in p for p in check(current=current))


def test_check_fails_on_a_retyped_field():
    broken = schema_of(_variant(employees=(str, Field())))
    assert incompatibilities(_snapshot(), broken) == ["property 'employees' changed type or constraints"]


def test_check_fails_on_a_newly_required_field():
    broken = schema_of(_variant(capital_yen=(int, Field())))
    assert "property 'capital_yen' is newly required" in incompatibilities(_snapshot(), broken)


def test_adding_an_optional_field_is_compatible():
    ok = schema_of(_variant(capital_yen=(int | None, Field(default=None))))
    assert incompatibilities(_snapshot(), ok) == []


def test_a_version_bump_needs_its_own_snapshot(tmp_path):
    for f in SNAPSHOT_DIR.glob("*.json"):
        (tmp_path / f.name).write_text(f.read_text())
    bumped = _variant(prefecture=None)
    bumped.version = 2
    current = {**export(), "identity.BusinessRegistered.v2": schema_of(bumped)}
    assert any("v2: no committed snapshot" in p for p in check(tmp_path, current))
    (tmp_path / "identity.BusinessRegistered.v2.json").write_text(json.dumps(schema_of(bumped)))
    assert check(tmp_path, current) == []


def test_envelope_wraps_payload_with_key_type_and_version():
    e = BusinessRegistered(business_id="corp-7000012050002", corporate_number="7000012050002", name="x",
                           prefecture="東京都", industry="製造業", employees=3)
    env = Envelope.wrap(e, producer="identity", actor="u1")
    assert (env.key, env.event_type, env.schema_version, env.producer) == ("corp-7000012050002", e.message_type, 1, "identity")
    assert BusinessRegistered.model_validate(env.payload) == e


def test_payloads_ignore_unknown_fields_so_added_fields_do_not_break_old_consumers():
    data = {"business_id": "b", "name": "n", "prefecture": "p", "industry": "i", "employees": 1, "new_field": 1}
    assert BusinessRegistered.model_validate(data).business_id == "b"
    with pytest.raises(Exception):
        BusinessRegistered.model_validate({"business_id": "b"})


def test_committed_openapi_and_asyncapi_documents_are_up_to_date(monkeypatch):
    from servicekit import apidocs
    from tests.support import apidocs_env

    apidocs_env(monkeypatch)
    assert apidocs.main(check=True) == 0, "run `make apidocs` and commit the documents"
