"""The whole dispatch programme through the gateway, on real Kafka, MongoDB and SMTP, every service a process.

identity registers the platform → budget allocates and shares the frame → experts registers and approves an
expert → an institution requests a dispatch → budget reserves → the expert visits and reports → the agency
confirms → the fee is committed to the ledger → the business is asked to rate (inbox, e-mail, login pop-up)
→ its next free request is refused until it rates → it rates → radar updated, next request accepted; a fourth
free request in the fiscal year is refused with the cap reason. One trace runs from the request to budget.
"""
from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from contracts.vocab import RATING_AXES, MemberRole, fiscal_year
from tests.integration.e2e_support import bearer, claim, ok
from tests.support import GATEWAY_VAR, eventually, service_port

FY = fiscal_year(datetime.now(UTC) + timedelta(hours=9))
DAY = date(FY + 1, 2, 1)  # inside the fiscal year, after today
ISSUE = "Sales fell by 30% after our main wholesaler closed; we need a new sales channel strategy."


@pytest.fixture
def programme(services, smtp, gateway):
    sink, smtp_port = smtp
    for name in ("identity", "experts", "dispatch", "budget", "ratings"):
        services(name, port=service_port(name))
    services("notifications", port=service_port("notifications"), SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
    return gateway, sink


async def test_R_DSP_14_R_BUD_04_R_RAT_03_R_DSP_12_R_DSP_03_whole_programme_through_the_gateway(programme, services):
    url, sink = programme
    gateway_log = GATEWAY_VAR / "log" / "gateway.log"
    gateway_from = gateway_log.stat().st_size if gateway_log.exists() else 0
    bureau, agency = bearer("officer-kyushu", "bureau", bureau_id="bureau-kyushu"), bearer("agency-1", "agency")
    business_account, expert_account = f"acct-biz-{uuid.uuid4().hex[:6]}", f"acct-exp-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        # --- identity: four institutions and a platform (R-PF-01/02); its event tells budget, experts, dispatch
        orgs = {}
        for name, t in (("熊本市商工会", 1), ("熊本商工会議所", 2), ("肥後信用金庫", 8), ("よろず支援拠点", None)):
            orgs[name] = (await ok(await http.post("/api/identity/organisations", headers=bureau, json={
                "name": name, "kind": "institution", "institution_type": t})))["org_id"]
        rep, chamber = orgs["熊本市商工会"], orgs["熊本商工会議所"]
        pf = await ok(await http.post("/api/identity/platforms", headers=bureau, json={
            "name": "熊本県地域プラットフォーム", "bureau_id": "bureau-kyushu", "fiscal_year": FY,
            "representative_id": rep, "member_ids": list(orgs.values())}))
        pid = pf["platform_id"]
        representative = bearer("rep-staff", "institution", orgs=[claim(rep, pid, MemberRole.REPRESENTATIVE)])
        chamber_claim = [claim(chamber, pid, MemberRole.DISPATCH_MEMBER)]
        staff = bearer("chamber-staff", "institution", orgs=chamber_claim)

        # --- budget: the bureau allocates the frame, the representative gives the chamber a share (R-BUD-01/02)
        async def allocated():
            r = await http.post("/api/budget/frames", headers=bureau, json={
                "fiscal_year": FY, "platform_id": pid, "fee": 1_000_000, "travel": 100_000, "reason": "FY allocation"})
            return r.json() if r.status_code in (200, 201) else None  # until budget has learnt the platform
        frame = await eventually(allocated, timeout=30)
        fid = frame["frame_id"]
        await ok(await http.put(f"/api/budget/frames/{fid}/shares/{chamber}", headers=representative,
                                json={"amount": 300_000, "reason": "chamber share"}))

        # --- experts: page, recommendation by a member institution, consent, application, approval (R-EX-01/02)
        expert = bearer(expert_account, "expert")
        expert_id = (await ok(await http.post("/api/experts/experts/me", headers=expert, json={
            "name": "山田 花子", "qualifications": ["中小企業診断士"], "fields": ["sales_channels", "management"],
            "regions": ["熊本県"], "introduction": "販路開拓と事業再生 / sales channels and turnaround"})))["expert_id"]

        async def recommended():
            r = await http.post(f"/api/experts/experts/{expert_id}/recommendations", headers=staff,
                                json={"org_id": chamber})
            return r.status_code == 200  # once experts has learnt the platform from identity
        await eventually(recommended, timeout=30)
        await ok(await http.post("/api/experts/experts/me/consents", headers=expert, json={"org_id": chamber}))
        await ok(await http.post("/api/experts/experts/me/application", headers=expert, json={
            "evidence": [{"route": "public_qualification", "qualification": "中小企業診断士"}],
            "no_disqualification": True}))
        approved = await ok(await http.post(f"/api/experts/experts/{expert_id}/review", headers=agency,
                                            json={"decision": "approve"}))
        assert approved["status"] == "registered"

        # --- identity: a sole proprietor registers (bound at once, R-ID-07) and lets the chamber request for it (R-ID-08)
        biz = bearer(business_account, "business")
        business_id = (await ok(await http.post("/api/identity/businesses", headers=biz, json={
            "name": "阿蘇みやげ店", "prefecture": "熊本県", "industry": "小売業", "employees": 4})))["business_id"]
        biz = bearer(business_account, "business", biz=[{"id": business_id, "role": "prime"}])
        dlg = await ok(await http.post(f"/api/identity/businesses/{business_id}/delegations", headers=biz, json={
            "org_id": chamber, "scopes": ["dispatch:request", "dispatch:read"], "days": 30}), 201)
        staff = bearer("chamber-staff", "institution", orgs=chamber_claim, dlg=[{
            "id": dlg["delegation_id"], "business_id": business_id, "org_id": chamber, "scopes": dlg["scopes"],
            "exp": dlg["expires_at"]}])

        # --- notifications: the business's e-mail address
        await ok(await http.put("/api/notifications/me/contact", headers=biz,
                                json={"email": "owner@kumamoto.example.jp", "language": "ja"}))

        # --- dispatch, route A (R-DSP-01): accepted, then reserved by the real budget service and approved
        def request_body() -> dict:
            return {"business_id": business_id, "expert_id": expert_id,
                    "institution_id": chamber, "issue": ISSUE, "issue_kind": "sales_channels",
                    "beyond_self_help": True, "needs_specialist": True, "travel_estimate": 2_000,
                    "planned_visits": [{"day": DAY.isoformat(), "hours": 3}], "accompanying_staff": ["chamber-staff"]}

        async def request() -> dict:
            async def answered():  # dispatch may still be learning the expert / platform from their events
                r = await http.post("/api/dispatch/requests", headers=staff, json=request_body())
                if r.status_code == 422 and "prime account" in r.text:
                    return None  # dispatch has not learnt the business's binding from identity's events yet
                body = await ok(r, 201)
                return body if body.get("reason_code") not in ("expert_not_registered", "expert_unknown",
                                                               "institution_unknown", "not_a_member") else None
            return await eventually(answered, timeout=30)

        async def status(did: str, *wanted: str):
            d = await ok(await http.get(f"/api/dispatch/requests/{did}", headers=agency))
            return d if d["status"] in wanted else None

        first = await request()
        assert first["status"] == "accepted", first
        did = first["dispatch_id"]
        await eventually(lambda: status(did, "approved"), timeout=30)

        # --- visit (R-ANC-01), report (R-DSP-09), confirmation with the fee (R-DSP-10), payment (R-BUD-04)
        await ok(await http.post(f"/api/dispatch/requests/{did}/schedule", headers=staff, json={}))
        loc = {"lat": 32.80, "lon": 130.71, "place": "client office"}
        vid = (await ok(await http.post(f"/api/dispatch/requests/{did}/visits", headers=expert,
                                        json={"location": loc, "accompanied_by": ["chamber-staff"]})))["visit_id"]
        await ok(await http.post(f"/api/dispatch/requests/{did}/visits/{vid}/check-out", headers=expert,
                                 json={"location": loc}))
        start = datetime(DAY.year, DAY.month, DAY.day, 1, 0, tzinfo=UTC)
        await ok(await http.post(f"/api/dispatch/requests/{did}/visits/declarations", headers=expert, json={
            "visit_id": vid, "start": start.isoformat(), "end": (start + timedelta(minutes=179)).isoformat(),
            "reason": "check-out recorded late", "signed": True, "signature": "山田 花子"}))
        await ok(await http.post(f"/api/dispatch/requests/{did}/visits/{vid}/sign-off", headers=biz, json={}))
        await ok(await http.post(f"/api/dispatch/requests/{did}/report", headers=expert,
                                 json={"summary": "Mapped the channels; proposed a D2C pilot and a wholesaler list."}))
        confirmed = await ok(await http.post(f"/api/dispatch/requests/{did}/confirm", headers=agency,
                                             json={"travel": 1_500}))
        assert (confirmed["fee"], confirmed["travel"]) == (12_500, 1_500)  # 2 h 59 min → 2.5 h × 5,000 yen
        await eventually(lambda: status(did, "paid"), timeout=30)
        ledger = await ok(await http.get(f"/api/budget/frames/{fid}/ledger", headers=bureau))
        commits = [e for e in ledger["entries"] if e["kind"] == "commit"]
        assert len(commits) == 1 and json.dumps(commits[0]).count(did) >= 1
        check = await ok(await http.get(f"/api/budget/frames/{fid}/check", headers=bureau))
        assert check["consistent"] is True

        # --- the business owes a rating: pending list, inbox, e-mail, login pop-up (R-RAT-03, R-NOT-02)
        async def owed():
            r = await ok(await http.get("/api/ratings/pending", headers=biz))
            return r or None
        pending = await eventually(owed, timeout=30)
        assert [p["dispatch_id"] for p in pending] == [did]

        async def prompted():
            return (await ok(await http.get("/api/notifications/prompts", headers=biz))) or None
        await eventually(prompted, timeout=30)
        mails = await eventually(_async_value(lambda: sink.to("owner@kumamoto.example.jp")), timeout=30)
        assert any(did in m.get_content() for m in mails)

        # R-DSP-12: no next free request while the rating is pending
        async def blocked():
            r = await ok(await http.post("/api/dispatch/requests", headers=staff, json=request_body()), 201)
            return r if r["reason_code"] == "rating_pending" else None
        refused = await eventually(blocked, timeout=30)
        assert refused["status"] == "refused"

        # --- the business rates: prompt gone, radar updated, next request accepted
        await ok(await http.post("/api/ratings/ratings", headers=biz, json={
            "dispatch_id": did, "scores": {a: 4 for a in RATING_AXES}}))

        async def no_prompt():
            return (await ok(await http.get("/api/notifications/prompts", headers=biz))) == []
        await eventually(no_prompt, timeout=30)
        radar = await ok(await http.get(f"/api/ratings/experts/{expert_id}/radar", headers=biz))
        assert radar["count"] == 1 and all(radar["averages"][a] == 4 for a in RATING_AXES)

        async def accepted():
            r = await ok(await http.post("/api/dispatch/requests", headers=staff, json=request_body()), 201)
            return r if r["status"] == "accepted" else None
        await eventually(accepted, timeout=30)

        # --- R-DSP-03: a third is accepted, a fourth in the same fiscal year is refused with the cap reason
        third = await ok(await http.post("/api/dispatch/requests", headers=staff, json=request_body()), 201)
        assert third["status"] == "accepted", third
        fourth = await ok(await http.post("/api/dispatch/requests", headers=staff, json=request_body()), 201)
        assert (fourth["status"], fourth["reason_code"]) == ("refused", "free_cap_reached")
        free = await ok(await http.get(f"/api/dispatch/businesses/{business_id}/free-dispatches", headers=biz))
        assert (free["used"], free["remaining"]) == (3, 0)

        # --- R-DSP-13: fraud found after payment; the refund, once repaid, returns to the frame's ledger (R-BUD-05)
        await ok(await http.post(f"/api/dispatch/requests/{did}/fraud", headers=agency,
                                 json={"reason": "the visit never took place"}))
        settled = await ok(await http.post(f"/api/dispatch/requests/{did}/refund", headers=agency,
                                           json={"decision": "repaid", "note": "bank transfer received"}))
        assert settled["fraud"]["refund_claim"]["repaid"] == 14_000

        async def refunded():
            led = await ok(await http.get(f"/api/budget/frames/{fid}/ledger?limit=500", headers=bureau))
            return [e for e in led["entries"] if e["kind"] == "refund"] or None
        refunds = await eventually(refunded, timeout=30)
        assert [(e["dispatch_id"], e["spent_fee"], e["spent_travel"]) for e in refunds] == [(did, -12_500, -1_500)]
        assert (await ok(await http.get(f"/api/budget/frames/{fid}/check", headers=bureau)))["consistent"] is True
        await eventually(lambda: _credited(http, did, agency), timeout=30)

    # --- R-ID-10: no token in any log, after the whole programme (services' logs and the gateway's)
    used = {h["authorization"][len("Bearer "):] for h in (bureau, agency, representative, staff, expert, biz)}
    logs = {name: p.log_file.read_text(errors="replace") for name, p in services.by_name.items()}
    logs["gateway"] = gateway_log.read_bytes()[gateway_from:].decode(errors="replace") if gateway_log.exists() else ""
    leaks = [(where, t[-12:]) for where, text in logs.items() for t in used
             if t in text or t.rsplit(".", 1)[-1] in text]
    assert not leaks, f"tokens found in logs: {leaks}"

    # --- one trace from the institution's HTTP request through dispatch, Kafka and the budget consumer
    spans = {name: services_spans(services, name) for name in ("dispatch", "budget")}
    request_traces = {s["trace_id"] for s in spans["dispatch"] if s.get("kind") == "SERVER"
                      and s.get("name") == "POST /requests"}
    budget_traces = {s["trace_id"] for s in spans["budget"]}
    assert request_traces & budget_traces, "the budget consumer did not join the request's trace"


async def _credited(http, did: str, agency: dict) -> dict | None:
    d = (await http.get(f"/api/dispatch/requests/{did}", headers=agency)).json()
    return d if d["fraud"]["refund_claim"].get("credit", {}).get("credited_at") else None


def services_spans(services, name: str) -> list[dict]:
    return services.by_name[name].spans()


def _async_value(fn):
    async def check():
        return fn()
    return check
