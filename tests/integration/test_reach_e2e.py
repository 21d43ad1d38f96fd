"""Reach (R-NOT-03) end to end through the gateway, every service a process, on real Kafka, MongoDB and SMTP.

The people are real identity accounts (created by an operator, with their e-mail addresses): a business's prime
and member accounts, an expert, an institution's linked staff and a bureau's officer. Notifications learns who
they are only from identity's and experts' events. A dispatch then runs through requested → accepted → reserved →
approved → scheduled → visited → reported → confirmed → paid, a second request is refused at screening (R-DSP-06) and a
third cancelled by the institution: for each status each party's people find the notice meant for their party in
their inbox and in the SMTP catcher, and the link it carries opens with their own token. A dispatch-capable member
added to the platform reaches the bureau's officer (R-PF-03).
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from contracts.vocab import RIGHTS, MemberRole
from tests.integration.e2e_support import ok
from tests.integration.test_programme_e2e import DAY, FY, ISSUE
from tests.support import eventually, service_port, token

LABEL = {"requested": "申込受付", "accepted": "審査通過", "refused": "不承認", "reserved": "予算確保",
         "approved": "派遣決定", "scheduled": "日程確定", "visited": "訪問実施", "reported": "報告書提出",
         "confirmed": "報告書確認済み", "paid": "謝金支払済み", "cancelled": "取消"}
# words of the next step each party must read, where it has one (R-NOT-03: what to do next)
NEXT = {("approved", "institution"): "訪問日程を確定", ("scheduled", "expert"): "チェックイン",
        ("visited", "business"): "サインオフ", ("visited", "expert"): "報告書を提出",
        ("confirmed", "business"): "評価", ("paid", "expert"): "入金", ("refused", "institution"): "理由を確認",
        ("cancelled", "expert"): "予定を解除"}


def bearer(sub: str, *roles: str, **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), ttl=3600, **claims)}"}


def claim(org_id: str, platform_id: str, role: MemberRole) -> dict:
    return {"org_id": org_id, "platform_id": platform_id, "member_role": role.value,
            "rights": sorted(r.value for r in RIGHTS[role])}


@pytest.fixture
def stack(services, smtp, gateway):
    sink, smtp_port = smtp
    mail = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMTP_BACKOFF_SECONDS": "0.2"}
    services("identity", port=service_port("identity"), IDENTITY_PUBLIC_URL=gateway + "/api/identity", **mail)
    for name in ("experts", "dispatch", "budget"):
        services(name, port=service_port(name))
    services("notifications", port=service_port("notifications"), PORTAL_URL=gateway, **mail)
    return gateway, sink


async def test_R_NOT_03_R_PF_03_every_status_reaches_each_person_of_each_party_through_the_gateway(stack):
    url, sink = stack
    u = uuid.uuid4().hex[:6]
    operator, agency = bearer("op-1", "operator"), bearer("agency-1", "agency")
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        # --- the people: real accounts with addresses, created by an operator
        people = {}
        for who, kind, extra in (("prime", "business", {}), ("member", "business", {}), ("expert", "expert", {}),
                                 ("staff", "institution", {}), ("officer", "bureau", {"bureau_id": f"bureau-{u}"})):
            email = f"{who}-{u}@reach.example.jp"
            acc = await ok(await http.post("/api/identity/staff-accounts", headers=operator, json={
                "email": email, "password": "correct horse battery 9", "real_name": f"{who} 太郎", "kind": kind,
                **extra}), 201)
            people[who] = (acc["account_id"], email)
        aid = {who: a for who, (a, _) in people.items()}
        bureau = bearer(aid["officer"], "bureau", bureau_id=f"bureau-{u}")

        # --- the institution and its platform; the staff account linked to the chamber (identity.StaffLinked)
        orgs = {}
        for name, t in (("商工会", 1), ("商工会議所", 2), ("信用金庫", 8), ("よろず支援拠点", None), ("中央会", 3)):
            orgs[name] = (await ok(await http.post("/api/identity/organisations", headers=bureau, json={
                "name": f"{name}{u}", "kind": "institution", "institution_type": t})))["org_id"]
        chamber = orgs["商工会議所"]
        pid = (await ok(await http.post("/api/identity/platforms", headers=bureau, json={
            "name": f"熊本PF{u}", "bureau_id": f"bureau-{u}", "fiscal_year": FY, "representative_id": orgs["商工会"],
            "member_ids": [orgs[n] for n in ("商工会", "商工会議所", "信用金庫", "よろず支援拠点")]})))["platform_id"]
        r = await http.post(f"/api/identity/organisations/{chamber}/staff", headers=bureau,
                            json={"account_id": aid["staff"]})
        assert r.status_code == 204, r.text
        representative = bearer("rep-staff", "institution", orgs=[claim(orgs["商工会"], pid, MemberRole.REPRESENTATIVE)])
        chamber_claim = [claim(chamber, pid, MemberRole.DISPATCH_MEMBER)]

        # --- budget frame and the chamber's share
        last = {}

        async def allocated():  # once budget has learnt the platform from identity's events
            r = await http.post("/api/budget/frames", headers=bureau, json={
                "fiscal_year": FY, "platform_id": pid, "fee": 1_000_000, "travel": 100_000, "reason": "FY allocation"})
            last["answer"] = (r.status_code, r.text[:300])
            return r.json() if r.status_code in (200, 201) else None
        try:
            fid = (await eventually(allocated, timeout=60))["frame_id"]
        except AssertionError:
            raise AssertionError(f"no frame: {last}") from None
        await ok(await http.put(f"/api/budget/frames/{fid}/shares/{chamber}", headers=representative,
                                json={"amount": 300_000, "reason": "chamber share"}))

        # --- the expert registers and is approved
        expert = bearer(aid["expert"], "expert")
        expert_id = (await ok(await http.post("/api/experts/experts/me", headers=expert, json={
            "name": "山田 花子", "qualifications": ["中小企業診断士"], "fields": ["sales_channels"],
            "regions": ["熊本県"], "introduction": "販路開拓"})))["expert_id"]
        staff0 = bearer(aid["staff"], "institution", orgs=chamber_claim)

        async def recommended():
            r = await http.post(f"/api/experts/experts/{expert_id}/recommendations", headers=staff0,
                                json={"org_id": chamber})
            return r.status_code == 200
        await eventually(recommended, timeout=30)
        await ok(await http.post("/api/experts/experts/me/consents", headers=expert, json={"org_id": chamber}))
        await ok(await http.post("/api/experts/experts/me/application", headers=expert, json={
            "evidence": [{"route": "public_qualification", "qualification": "中小企業診断士"}],
            "no_disqualification": True}))
        await ok(await http.post(f"/api/experts/experts/{expert_id}/review", headers=agency, json={"decision": "approve"}))

        # --- the business: a sole proprietor (prime at once), a member invited by e-mail, a delegation
        prime0 = bearer(aid["prime"], "business")
        bid = (await ok(await http.post("/api/identity/businesses", headers=prime0, json={
            "name": f"阿蘇みやげ店{u}", "prefecture": "熊本県", "industry": "小売業", "employees": 4})))["business_id"]
        prime = bearer(aid["prime"], "business", biz=[{"id": bid, "role": "prime"}])
        await ok(await http.post(f"/api/identity/businesses/{bid}/invitations", headers=prime,
                                 json={"email": people["member"][1]}))
        await ok(await http.post(f"/api/identity/businesses/{bid}/invitations/accept", headers=bearer(aid["member"], "business")))
        member = bearer(aid["member"], "business", biz=[{"id": bid, "role": "member"}])
        dlg = await ok(await http.post(f"/api/identity/businesses/{bid}/delegations", headers=prime, json={
            "org_id": chamber, "scopes": ["dispatch:request", "dispatch:read"], "days": 30}), 201)
        staff = bearer(aid["staff"], "institution", orgs=chamber_claim, dlg=[{
            "id": dlg["delegation_id"], "business_id": bid, "org_id": chamber, "scopes": dlg["scopes"],
            "exp": dlg["expires_at"]}])
        tokens = {"prime": prime, "member": member, "expert": expert, "staff": staff}
        role_of = {"prime": "business", "member": "business", "expert": "expert", "staff": "institution"}

        # --- dispatches: one all the way to paid, one refused by the agency, one cancelled by the institution
        body = {"business_id": bid, "expert_id": expert_id, "institution_id": chamber, "issue": ISSUE,
                "issue_kind": "sales_channels", "beyond_self_help": True, "needs_specialist": True,
                "travel_estimate": 2_000, "planned_visits": [{"day": DAY.isoformat(), "hours": 3}],
                "accompanying_staff": [aid["staff"]]}

        async def request() -> str:
            async def answered():  # until dispatch has learnt the binding, the expert and the platform
                r = await http.post("/api/dispatch/requests", headers=staff, json=body)
                if r.status_code == 422 and "prime account" in r.text:
                    return None
                d = await ok(r, 201)
                return d if d["status"] == "accepted" else None
            return (await eventually(answered, timeout=30))["dispatch_id"]

        async def status(did: str, wanted: str):
            d = await ok(await http.get(f"/api/dispatch/requests/{did}", headers=agency))
            return d if d["status"] == wanted else None

        did = await request()
        await eventually(lambda: status(did, "approved"), timeout=30)
        # R-DSP-06: an advisory contract declared is a ground for refusal, decided at screening
        refusal = await ok(await http.post("/api/dispatch/requests", headers=staff, json={
            **body, "declarations": {"advisory_contract": True}}), 201)
        assert refusal["status"] == "refused", refusal
        refused, cancelled = refusal["dispatch_id"], await request()
        await ok(await http.post(f"/api/dispatch/requests/{cancelled}/cancel", headers=staff,
                                 json={"reason": "the business solved it"}))
        await ok(await http.post(f"/api/dispatch/requests/{did}/schedule", headers=staff, json={}))
        loc = {"lat": 32.80, "lon": 130.71, "place": "client office"}
        vid = (await ok(await http.post(f"/api/dispatch/requests/{did}/visits", headers=expert,
                                        json={"location": loc, "accompanied_by": [aid["staff"]]})))["visit_id"]
        await ok(await http.post(f"/api/dispatch/requests/{did}/visits/{vid}/check-out", headers=expert,
                                 json={"location": loc}))
        start = datetime(DAY.year, DAY.month, DAY.day, 1, 0, tzinfo=UTC)
        await ok(await http.post(f"/api/dispatch/requests/{did}/visits/declarations", headers=expert, json={
            "visit_id": vid, "start": start.isoformat(), "end": (start + timedelta(minutes=180)).isoformat(),
            "reason": "check-out recorded late", "signed": True, "signature": "山田 花子"}))
        await ok(await http.post(f"/api/dispatch/requests/{did}/visits/{vid}/sign-off", headers=prime, json={}))
        await ok(await http.post(f"/api/dispatch/requests/{did}/report", headers=expert,
                                 json={"summary": "Mapped the channels; proposed a D2C pilot."}))
        await ok(await http.post(f"/api/dispatch/requests/{did}/confirm", headers=agency, json={"travel": 1_500}))
        await eventually(lambda: status(did, "paid"), timeout=30)

        # --- every status, every person: inbox + SMTP catcher, the right party's words, a link that opens
        expected = [(did, s) for s in ("requested", "accepted", "reserved", "approved", "scheduled", "visited",
                                       "reported", "confirmed", "paid")]
        expected += [(refused, "refused"), (cancelled, "cancelled")]

        missing: dict[str, list] = {}

        async def inbox(who: str) -> list[dict] | None:
            items = await ok(await http.get("/api/notifications/inbox", headers=tokens[who], params={"limit": 200}))
            have = {(i["subject"].split(" ")[1].rstrip(":"), i["subject"].rsplit(" ", 1)[1]) for i in items}
            missing[who] = [(d, s) for d, s in expected if (d, LABEL[s]) not in have]
            return None if missing[who] else items

        for who in ("prime", "member", "expert", "staff"):
            try:
                items = await eventually(lambda: inbox(who), timeout=60)
            except AssertionError:
                raise AssertionError(f"{who}'s inbox lacks {missing[who]} after 60 s") from None
            address = people[who][1]
            for d, s in expected:
                notice = next(i for i in items if i["subject"] == f"【支援ポータル】専門家派遣 {d}: {LABEL[s]}")
                if words := NEXT.get((s, role_of[who])):
                    assert words in notice["body"], (who, s, notice["body"])
                link = f"{url}/api/dispatch/requests/{d}"
                assert link in notice["body"]
                assert (await http.get(link[len(url):], headers=tokens[who])).status_code == 200, (who, link)
            # the refusal says why
            assert (refusal.get("reason") or refusal["reason_code"]) in next(i for i in items if refused in i["subject"])["body"]

            async def mailed():
                got = {m["Subject"] for m in sink.to(address)}
                return all(f"【支援ポータル】専門家派遣 {d}: {LABEL[s]}" in got for d, s in expected) or None
            await eventually(mailed, timeout=60)
        # one-click unsubscribe through the gateway, without a token (RFC 8058): the link in the mail works
        mail = next(m for m in sink.to(people["member"][1]) if m["List-Unsubscribe"])
        link = mail["List-Unsubscribe"].strip("<>")
        assert link.startswith(f"{url}/api/notifications/unsubscribe/")
        r = await http.post(link[len(url):], data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200 and r.json() == {"unsubscribed": "dispatch"}, r.text
        # the messaging app's webhook reaches the service (which checks the signature itself)
        r = await http.post("/api/notifications/line/webhook", content=b"{}", headers={"x-line-signature": "x"})
        assert r.status_code == 401 and "signature" in r.json()["detail"].lower()
        # the expert is not told the business's next step, nor the business the expert's
        expert_items = await inbox("expert")
        assert not any("サインオフしてください" in i["body"] for i in expert_items)

        # --- R-PF-03: a dispatch-capable member joins; the bureau's officer hears of it, with a body and a link
        await ok(await http.post(f"/api/identity/platforms/{pid}/members", headers=bureau, json={"org_id": orgs["中央会"]}))

        async def bureau_notice():
            items = await ok(await http.get("/api/notifications/inbox", headers=bureau))
            return [i for i in items if i["template"] == "platform_dispatch_member_added"] or None
        (notice,) = await eventually(bureau_notice, timeout=30)
        assert f"中央会{u}" in notice["body"] and f"熊本PF{u}" in notice["subject"]
        link = f"{url}/api/identity/platforms/{pid}"
        assert link in notice["body"] and (await http.get(link[len(url):], headers=bureau)).status_code == 200

        async def officer_mail():
            return [m for m in sink.to(people["officer"][1]) if "派遣可能機関" in m["Subject"]] or None
        await eventually(officer_mail, timeout=30)
