"""Operator tools (R-OPS-02) on running identity, experts and dispatch: find accounts and businesses (paged), and the
audit trail of an account, a business or an expert across services — who, what, when, through which client; a
partner's prefill read through its third-party client shows that client."""
from __future__ import annotations

import uuid

import httpx

from tests.integration.identity_support import client_token, partner_client, start_identity
from tests.support import eventually, token

PASSWORD = "correct horse battery 9"


def auth(sub: str, *roles: str, client_id: str = "portal-web", **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), client_id=client_id, ttl=1800, **claims)}"}


async def test_R_OPS_02_search_and_audit_trail_across_services_names_the_client(services):
    identity = start_identity(services)
    experts = services("experts")
    u = uuid.uuid4().hex[:6]
    operator = auth("op-1", "operator", client_id="ops-console")
    async with httpx.AsyncClient(base_url=identity.url, timeout=20) as http, \
            httpx.AsyncClient(base_url=experts.url, timeout=20) as ex:
        accounts = []
        for n in range(3):
            r = await http.post("/staff-accounts", headers=operator, json={
                "email": f"Sato.{u}.{n}@Example.jp", "password": PASSWORD, "real_name": f"佐藤{u} {n}",
                "kind": "business"})
            assert r.status_code == 201, r.text
            accounts.append(r.json()["account_id"])
        expert_acc = (await http.post("/staff-accounts", headers=operator, json={
            "email": f"expert.{u}@example.jp", "password": PASSWORD, "real_name": "山田 花子", "kind": "expert"})).json()

        # --- search: by e-mail prefix (any case), real-name prefix, id; paged without repeats; operators only
        seen, cursor = [], None
        while True:
            r = await http.get("/operator/accounts", headers=operator,
                               params={"q": f"sato.{u}@"[:-1], "limit": 1, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            seen += [a["account_id"] for a in r.json()["items"]]
            if not (cursor := r.json()["next_cursor"]):
                break
        assert sorted(seen) == sorted(accounts)
        hits = (await http.get("/operator/accounts", headers=operator, params={"q": f"佐藤{u}"})).json()["items"]
        assert len(hits) == 3 and all("password_hash" not in h for h in hits)
        assert [h["account_id"] for h in (await http.get("/operator/accounts", headers=operator,
                                                          params={"q": accounts[1]})).json()["items"]] == [accounts[1]]
        owner = auth(accounts[0], "business")
        assert (await http.get("/operator/accounts", headers=owner, params={"q": "sato"})).status_code == 403

        # --- a business registered by its owner through the portal; a partner reads it through its own client
        r = await http.post("/businesses", headers=owner, json={"name": f"阿蘇みやげ店{u}", "prefecture": "熊本県",
                                                                  "industry": "小売業", "employees": 4})
        bid = r.json()["business_id"]
        owner = auth(accounts[0], "business", biz=[{"id": bid, "role": "prime"}])
        partner = await partner_client(http, name=f"会計クラウド{u}")
        assert (await http.post(f"/businesses/{bid}/consents", headers=owner,
                                json={"client_id": partner["client_id"]})).status_code == 201
        access = await client_token(http, partner)
        r = await http.get(f"/prefill/businesses/{bid}", headers={"authorization": f"Bearer {access}"})
        assert r.status_code == 200, r.text
        found = (await http.get("/operator/businesses", headers=operator, params={"q": f"阿蘇みやげ店{u}"})).json()
        assert [b["business_id"] for b in found["items"]] == [bid] and found["items"][0]["prime_id"] == accounts[0]

        # --- an expert acts in the experts service (another service, another topic)
        expert = auth(expert_acc["account_id"], "expert", client_id="portal-web")
        r = await ex.post("/experts/me", headers=expert, json={"name": "山田 花子", "qualifications": ["中小企業診断士"],
                                                              "fields": ["sales_channels"], "regions": ["熊本県"],
                                                              "introduction": "販路開拓"})
        assert r.status_code in (200, 201), r.text
        expert_id = r.json()["expert_id"]

        async def trail(ref: str, *wanted: str):
            r = await http.get("/operator/audit", headers=operator, params={"ref": ref, "limit": 100})
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            return items if set(wanted) <= {i["action"] for i in items} else None

        items = await eventually(lambda: trail(bid, "identity.BusinessRegistered", "identity.BindingChanged",
                                               "identity.ConsentGranted", "identity.PrefillRead"), timeout=30)
        by = {i["action"]: i for i in items}
        assert (by["identity.BusinessRegistered"]["actor"], by["identity.BusinessRegistered"]["client_id"]) == \
            (accounts[0], "portal-web")
        # the partner's read shows the partner's client, not the portal
        assert by["identity.PrefillRead"]["client_id"] == partner["client_id"]
        assert by["identity.PrefillRead"]["service"] == "identity"
        items = await eventually(lambda: trail(expert_id, "experts.ExpertChanged"), timeout=30)
        changed = next(i for i in items if i["action"] == "experts.ExpertChanged")
        assert (changed["service"], changed["actor"], changed["client_id"]) == ("experts", expert_acc["account_id"],
                                                                                "portal-web")
        # the account's own trail: created by the operator through the operators' console, then its business
        items = await eventually(lambda: trail(accounts[0], "identity.AccountRegistered",
                                               "identity.BusinessRegistered"), timeout=30)
        created = next(i for i in items if i["action"] == "identity.AccountRegistered")
        assert (created["actor"], created["client_id"]) == ("op-1", "ops-console")
        ats = [i["at"] for i in items]
        assert ats == sorted(ats, reverse=True)
        assert (await http.get("/operator/audit", headers=owner, params={"ref": bid})).status_code == 403
