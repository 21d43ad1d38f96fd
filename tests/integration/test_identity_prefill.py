"""Consent-based prefill on real Kafka + MongoDB (R-ID-04, R-ID-05): external clients read a business's
profile only with its consent, exactly the fields their scopes allow; every read is listed for the business."""
from __future__ import annotations

import httpx
import pytest

from contracts import Envelope
from tests.integration.identity_support import bearer, client_token, partner_client, start_identity
from tests.integration.identity_support import OWNER, PROFILE, prove_prime
from tests.support import read_topic

BASIC = {"corporate_number", "name", "postal_code", "address", "prefecture", "representative", "capital", "industry",
         "employees"}
CORP = PROFILE["corporate_number"]


@pytest.fixture
def identity(services):
    return start_identity(services)


def auth(tok: str) -> dict:
    return {"authorization": f"Bearer {tok}"}


async def test_R_ID_04_prefill_only_with_consent_exactly_the_scoped_fields_and_every_read_listed(identity, infra, ns):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        bid = await prove_prime(http, OWNER)
        kaikei = await partner_client(http, ["prefill:read"], name="会計クラウド")
        bank = await partner_client(http, ["prefill:read", "prefill:financials"], name="オンライン融資")
        kaikei_tok, bank_tok = await client_token(http, kaikei), await client_token(http, bank)

        # without consent: 403 and nothing, the same for an unknown business
        for number in (CORP, "4000012090001"):
            r = await http.get(f"/prefill/{number}", headers=auth(kaikei_tok))
            assert r.status_code == 403 and not BASIC & set(r.json()), r.text
        assert (await http.get("/prefill/7000012050003", headers=auth(kaikei_tok))).status_code == 422

        r = await http.post(f"/businesses/{bid}/consents", headers=OWNER, json={"client_id": kaikei["client_id"]})
        assert r.status_code == 201 and r.json()["client_name"] == "会計クラウド" and "financials" not in r.json()["fields"]
        assert (await http.post(f"/businesses/{bid}/consents", headers=OWNER,
                                json={"client_id": kaikei["client_id"]})).status_code == 201  # idempotent
        r = await http.get(f"/prefill/{CORP}", headers=auth(kaikei_tok))
        assert r.status_code == 200 and set(r.json()) == BASIC | {"business_id"}
        assert (r.json()["name"], r.json()["postal_code"], r.json()["capital"]) == ("熊本精密工業株式会社", "860-0001", 10_000_000)

        # a consent is per client: the bank gets nothing until the business consents to it too
        assert (await http.get(f"/prefill/{CORP}", headers=auth(bank_tok))).status_code == 403
        assert (await http.post(f"/businesses/{bid}/consents", headers=OWNER,
                                json={"client_id": bank["client_id"]})).status_code == 201
        r = await http.get(f"/prefill/{CORP}", headers=auth(bank_tok))
        assert set(r.json()) == BASIC | {"business_id", "financials"} and len(r.json()["financials"]) == 3
        narrow = await client_token(http, bank, scope="prefill:read")  # a token with fewer scopes gets fewer fields
        assert "financials" not in (await http.get(f"/prefill/{CORP}", headers=auth(narrow))).json()

        # withdrawal: nothing from now on
        assert (await http.delete(f"/businesses/{bid}/consents/{kaikei['client_id']}", headers=OWNER)).status_code == 204
        r = await http.get(f"/prefill/{CORP}", headers=auth(kaikei_tok))
        assert r.status_code == 403 and not BASIC & set(r.json())
        assert (await http.delete(f"/businesses/{bid}/consents/{kaikei['client_id']}", headers=OWNER)).status_code == 404
        assert [c["client_id"] for c in (await http.get(f"/businesses/{bid}/consents", headers=OWNER)).json()] == [bank["client_id"]]

        # the business sees who read what and when, refused attempts included, newest first
        log = (await http.get(f"/businesses/{bid}/prefill-reads", headers=OWNER)).json()
        assert [(e["client_name"], e["outcome"], "financials" in e["fields"]) for e in log] == [
            ("会計クラウド", "refused", False), ("オンライン融資", "served", False), ("オンライン融資", "served", True),
            ("オンライン融資", "refused", False), ("会計クラウド", "served", False), ("会計クラウド", "refused", False)]
        assert (await http.get(f"/businesses/{bid}/prefill-reads", headers=bearer("owner-2", ["business"]))).status_code == 404

        # only clients with the prefill scope may read; a consent only for a prefill client
        assert (await http.get(f"/prefill/{CORP}", headers=OWNER)).status_code == 403
        other = await partner_client(http, [], name="no scopes")
        assert (await http.get(f"/prefill/{CORP}", headers=auth(await client_token(http, other)))).status_code == 403
        assert (await http.post(f"/businesses/{bid}/consents", headers=OWNER,
                                json={"client_id": other["client_id"]})).status_code == 422

    records = await read_topic(infra.kafka, ns.topic("identity.events"), min_count=7)
    consents = [(e.event_type, e.payload["client_id"]) for e in map(Envelope.model_validate_json, (r.value for r in records))
                if e.event_type.startswith("identity.Consent")]
    assert consents == [("identity.ConsentGranted", kaikei["client_id"]), ("identity.ConsentGranted", bank["client_id"]),
                        ("identity.ConsentWithdrawn", kaikei["client_id"])]
