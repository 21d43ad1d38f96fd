"""The dispatch service on real Kafka + MongoDB; this test plays the budget service (answers commands) and
the experts / ratings / identity publishers (R-DSP-01..03, 08, 12, 14, R-ANC-01, R-BUD-04)."""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.budget import BudgetCommitted, BudgetRefunded, BudgetRefused, BudgetReleased, BudgetReserved
from contracts.events.experts import ExpertChanged
from contracts.events.identity import (AccountRevoked, BindingChanged, BusinessRegistered, DelegationRevoked,
                                       MembershipChanged)
from contracts.events.ratings import RatingGiven, RatingOwed
from contracts.vocab import fiscal_year
from tests.support import Namespace, ServiceProcess, eventually, read_topic, token

FY = fiscal_year(datetime.now(UTC) + timedelta(hours=9))
DAY = date(FY, 10, 1) if date(FY, 10, 1) >= date.today() else date(FY + 1, 2, 1)
PLATFORM, INSTITUTION = "plat-kumamoto", "inst-shokokai-1"
STAFF = {"sub": "staff-1", "roles": ["institution"],
         "orgs": [{"org_id": INSTITUTION, "platform_id": PLATFORM, "member_role": "dispatch_member",
                   "rights": ["manage_budget", "request_dispatch", "recommend_experts", "joint_activities"]}]}
ISSUE = "Sales fell by 30% after our main wholesaler closed; we need a new sales channel strategy."


def auth(**claims) -> dict:
    return {"authorization": f"Bearer {token(**claims)}"}


def owner(business: str) -> dict:
    """A token of the business's prime account: the business comes from its `biz` claim (R-ID-07)."""
    return auth(sub=f"acct-{business}", roles=["business"], biz=[{"id": business, "role": "prime"}])


def delegations(*businesses: str, scopes=("dispatch:request", "dispatch:read")) -> list[dict]:
    return [{"id": f"dlg-{b}", "business_id": b, "org_id": INSTITUTION, "scopes": list(scopes),
             "exp": int(time.time()) + 86400} for b in businesses]


def staff(*businesses: str, **claims) -> dict:
    """A token of the institution's staff holding the businesses' delegations (R-ID-08)."""
    return auth(**{**STAFF, "dlg": delegations(*businesses), **claims})


class World:
    """The other services, as far as dispatch can tell: their events on Kafka."""

    def __init__(self, infra, ns, url):
        self.infra, self.ns, self.url = infra, ns, url
        self.db = AsyncMongoClient(infra.mongo)[ns.db("dispatch")]
        self.http = httpx.AsyncClient(base_url=url, timeout=15)
        self.producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
        self.bound: set[str] = set()

    async def bind(self, business: str) -> None:
        """Identity's word that the business's prime account is acct-<business> (R-ID-07)."""
        if business in self.bound:
            return
        env = await self.publish(BindingChanged(business_id=business, account_id=f"acct-{business}", role="prime"),
                                 producer="identity")
        await eventually(lambda: self.db.business_people.find_one({"_id": business, "_seen": env.event_id}))
        self.bound.add(business)

    async def publish(self, msg, *, producer: str, env: Envelope | None = None) -> Envelope:
        env = env or Envelope.wrap(msg, producer=producer)
        await self.producer.send_and_wait(self.ns.topic(msg.topic), env.model_dump_json().encode(), key=msg.key().encode())
        return env

    async def expert(self, expert_id: str, **kw) -> None:
        e = ExpertChanged(expert_id=expert_id, account_id=f"acct-{expert_id}", change="approved", status="registered",
                          registered_fiscal_year=FY, name=f"Expert {expert_id}", **kw)
        env = await self.publish(e, producer="experts")
        await eventually(lambda: self.db.experts.find_one({"_id": expert_id, "_seen": env.event_id}))

    async def request(self, business: str, expert: str = "ex-1", **kw) -> dict:
        await self.bind(business)
        body = {"business_id": business, "expert_id": expert,
                "institution_id": INSTITUTION, "issue": ISSUE, "beyond_self_help": True, "needs_specialist": True,
                "planned_visits": [{"day": DAY.isoformat(), "hours": 3}, {"day": (DAY + timedelta(days=7)).isoformat(), "hours": 2}],
                "travel_estimate": 1000, **kw}
        r = await self.http.post("/requests", json=body, headers=staff(business))
        assert r.status_code == 201, r.text
        return r.json()

    async def get(self, dispatch_id: str) -> dict:
        r = await self.http.get(f"/requests/{dispatch_id}", headers=auth(sub="agent-1", roles=["agency"]))
        assert r.status_code == 200, r.text
        return r.json()

    async def status(self, dispatch_id: str, *wanted: str) -> dict | None:
        d = await self.get(dispatch_id)
        return d if d["status"] in wanted else None

    async def records(self, logical: str, event_type: str, min_count: int, ids=None) -> list[dict]:
        """Envelopes of `event_type` on the topic (about dispatches `ids`, if given), once `min_count` are there."""
        async def enough():
            recs = await read_topic(self.infra.kafka, self.ns.topic(logical), min_count=1, timeout=3)
            envs = [json.loads(r.value) for r in recs]
            found = [e for e in envs if e["event_type"] == event_type
                     and (ids is None or e["payload"]["dispatch_id"] in ids)]
            return found if len(found) >= min_count else None

        return await eventually(enough, timeout=30, interval=0.5)

    async def command(self, event_type: str, dispatch_id: str) -> dict:
        return (await self.records("budget.commands", event_type, 1, {dispatch_id}))[0]["payload"]

    async def reserved(self, cmd: dict, **kw):
        return await self.publish(BudgetReserved(frame_id=cmd["frame_id"], dispatch_id=cmd["dispatch_id"],
                                                 command_id=cmd["command_id"], member_id=cmd["member_id"],
                                                 amount=cmd["fee"] + cmd["travel"]), producer="budget", **kw)

    async def refused(self, cmd: dict):
        return await self.publish(BudgetRefused(frame_id=cmd["frame_id"], dispatch_id=cmd["dispatch_id"],
                                                command_id=cmd["command_id"], reason_code="insufficient_balance",
                                                reason="The institution's share of the budget is used up."),
                                  producer="budget")


@pytest.fixture(scope="module")
async def world(infra, tmp_path_factory):
    """One dispatch process for the module (starting one takes seconds); tests use distinct businesses."""
    ns = Namespace()
    svc = ServiceProcess("dispatch", infra, ns, tmp_path_factory.mktemp("dispatch"),
                         OUTCOME_SURVEY_MONTHS="0,12", OUTCOME_SWEEP_SECONDS="0.5",  # the first survey due at payment
                         INTEGRITY_SWEEP_SECONDS="0.5")
    w = World(infra, ns, svc.url)
    try:
        svc.start()
        await w.producer.start()
        await w.expert("ex-1")
        yield w
    finally:
        await w.producer.stop()
        await w.http.aclose()
        svc.stop()


async def test_R_DSP_01_R_DSP_08_route_A_request_reserves_budget_then_is_approved(world):
    d = await world.request("biz-a")
    assert d["status"] == "accepted" and d["route"] == "A" and d["platform_id"] == PLATFORM
    # R-DSP-05: the requesting staff accompany by default and follow the business up for ~3 years.
    assert (d["accompanying_staff"], d["follow_up_until_fiscal_year"]) == (["staff-1"], FY + 3)
    cmd = await world.command("budget.ReserveBudget", d["dispatch_id"])
    # 3 h + 2 h on different days at 5,000 yen/h, plus travel; against the member's share of its frame.
    assert (cmd["frame_id"], cmd["member_id"], cmd["fee"], cmd["travel"]) == (f"frame-{FY}-{PLATFORM}", INSTITUTION,
                                                                              25_000, 1_000)
    assert d["reserve"]["command_id"] == cmd["command_id"]
    await world.reserved(cmd)
    approved = await eventually(lambda: world.status(d["dispatch_id"], "approved"))
    assert [h["status"] for h in approved["history"]] == ["requested", "accepted", "reserved", "approved"]
    events = await world.records("dispatch.events", "dispatch.DispatchStatusChanged", 4, {d["dispatch_id"]})
    steps = [e["payload"]["status"] for e in events]
    assert steps == ["requested", "accepted", "reserved", "approved"]


async def test_R_DSP_08_budget_refusal_refuses_the_dispatch_with_the_budget_reason(world):
    d = await world.request("biz-b")
    await world.refused(await world.command("budget.ReserveBudget", d["dispatch_id"]))
    refused = await eventually(lambda: world.status(d["dispatch_id"], "refused"))
    assert refused["reason_code"] == "budget_insufficient_balance" and "used up" in refused["reason"]
    # R-DSP-03: a refusal does not use up a free dispatch.
    r = await world.http.get("/businesses/biz-b/free-dispatches", headers=staff("biz-b"))
    assert (r.json()["used"], r.json()["remaining"]) == (0, 3)


async def test_R_DSP_12_pending_rating_blocks_a_free_request_until_given(world):
    owed = dict(expert_id="ex-1", owed_id="owed-1", dispatch_id="dsp-old", business_id="biz-r",
                rater_account_id="acct-biz-r", rater_kind="business")
    env = await world.publish(RatingOwed(**owed, since=datetime.now(UTC)), producer="ratings")
    await eventually(lambda: world.db.pending_ratings.find_one({"_id": "owed-1", "_seen": env.event_id}))
    blocked = await world.request("biz-r")
    assert blocked["status"] == "refused" and blocked["reason_code"] == "rating_pending"
    assert [r["code"] for r in blocked["refusals"]] == ["rating_pending"]
    env = await world.publish(RatingGiven(**owed), producer="ratings")
    await eventually(lambda: world.db.pending_ratings.find_one({"_id": "owed-1", "given": True}))
    assert (await world.request("biz-r"))["status"] == "accepted"


async def test_R_DSP_03_fourth_free_request_in_a_fiscal_year_is_refused_with_the_cap_reason(world):
    for _ in range(3):
        assert (await world.request("biz-c"))["status"] == "accepted"
    fourth = await world.request("biz-c")
    assert fourth["status"] == "refused" and fourth["reason_code"] == "free_cap_reached"
    assert "all its free dispatches" in fourth["reason"]
    seen_by_business = await world.http.get("/businesses/biz-c/free-dispatches",
                                            headers=owner("biz-c"))
    assert (seen_by_business.json()["used"], seen_by_business.json()["remaining"]) == (3, 0)
    # A cancellation before approval gives the free dispatch back.
    first = (await world.http.get("/businesses/biz-c/free-dispatches", headers=staff("biz-c"))).json()["dispatch_ids"][0]
    r = await world.http.post(f"/requests/{first}/cancel", json={"reason": "solved otherwise"}, headers=auth(**STAFF))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (await world.request("biz-c"))["status"] == "accepted"


async def test_R_DSP_14_saga_survives_silence_and_duplicate_answers_without_double_charging(world):
    """Requests made while nobody answers budget commands stay accepted; once answers (and duplicates)
    arrive each ends approved or refused; exactly one ReserveBudget per dispatch and one CommitBudget per
    confirmed dispatch; a cancellation after reservation releases it (R-DSP-14, R-BUD-04)."""
    ids = [(await world.request(f"biz-s{i}"))["dispatch_id"] for i in range(6)]
    reserves = await world.records("budget.commands", "budget.ReserveBudget", len(ids), ids)
    for i in ids:
        assert (await world.get(i))["status"] == "accepted"  # nothing answered: none lost, none moved on
    cmds = {e["payload"]["dispatch_id"]: e["payload"] for e in reserves}
    for n, i in enumerate(ids):
        if n % 3 == 2:
            await world.refused(cmds[i])
            await world.refused(cmds[i])  # a redelivered answer
        else:
            env = await world.reserved(cmds[i])
            await world.reserved(cmds[i], env=env)  # the same event again
            await world.reserved(cmds[i])            # and a second answer to the same command
    finals = {}
    for i in ids:
        finals[i] = (await eventually(lambda i=i: world.status(i, "approved", "refused")))["status"]
    assert [finals[i] for i in ids] == ["approved", "approved", "refused"] * 2
    count = Counter(e["payload"]["dispatch_id"] for e in await world.records("budget.commands", "budget.ReserveBudget", 6, ids))
    assert all(count[i] == 1 for i in ids)
    # requested + accepted each, then reserved + approved (4 × 2) or refused (2 × 1)
    events = await world.records("dispatch.events", "dispatch.DispatchStatusChanged", 6 * 2 + 4 * 2 + 2, ids)
    approvals = Counter(e["payload"]["dispatch_id"] for e in events if e["payload"]["status"] == "approved")
    assert all(approvals[i] == 1 for i in ids if finals[i] == "approved")

    # Confirm one approved dispatch; the commit answer arrives twice; cancel another after reservation.
    done, dropped = ids[0], ids[1]
    await complete_visits(world, done, minutes=179)
    # R-ANC-01: a declared missing visit that the business has not signed off is not paid.
    extra = datetime(DAY.year, DAY.month, DAY.day, 1, 0, tzinfo=UTC) + timedelta(days=2)
    r = await world.http.post(f"/requests/{done}/visits/declarations", headers=auth(sub="acct-ex-1", roles=["expert"]), json={
        "start": extra.isoformat(), "end": (extra + timedelta(hours=2)).isoformat(), "reason": "forgot to check in",
        "signed": True, "signature": "Expert ex-1"})
    assert r.status_code == 201 and r.json()["status"] == "reported", r.text
    agency = auth(sub="agent-1", roles=["agency"])
    r = await world.http.post(f"/requests/{done}/confirm", json={"travel": 800}, headers=agency)
    # nothing is dropped silently: the agency sees the unsigned visit and must approve paying without it
    assert r.status_code == 409 and [f["code"] for f in r.json()["findings"]] == ["visit_unsigned"], r.text
    r = await world.http.post(f"/requests/{done}/confirm", json={"travel": 800, "approve": ["visit_unsigned"]},
                              headers=agency)
    assert r.status_code == 200, r.text
    assert [f["code"] for f in r.json()["confirmation"]["approved_findings"]] == ["visit_unsigned"]
    assert (r.json()["status"], r.json()["fee"], r.json()["travel"]) == ("confirmed", 12_500, 800)  # 2 h 59 → 2.5 h
    commit = await world.command("budget.CommitBudget", done)
    assert (commit["fee"], commit["travel"]) == (12_500, 800)
    answer = BudgetCommitted(frame_id=commit["frame_id"], dispatch_id=done, command_id=commit["command_id"],
                             spent=13_300, returned=12_700)
    await world.publish(answer, producer="budget")
    await world.publish(answer, producer="budget")
    paid = await eventually(lambda: world.status(done, "paid"))
    assert paid["payment"]["spent"] == 13_300
    again = await world.http.post(f"/requests/{done}/confirm", json={}, headers=auth(sub="agent-1", roles=["agency"]))
    assert again.status_code == 409 and again.json()["current_status"] == "paid"
    completed = await world.records("dispatch.events", "dispatch.DispatchCompleted", 1, {done})
    assert [c["payload"]["business_account_id"] for c in completed] == ["acct-biz-s0"]

    r = await world.http.post(f"/requests/{dropped}/cancel", json={"reason": "business closed"}, headers=auth(**STAFF))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    release = await world.command("budget.ReleaseBudget", dropped)
    await world.publish(BudgetReleased(frame_id=release["frame_id"], dispatch_id=dropped,
                                       command_id=release["command_id"], amount=26_000), producer="budget")
    await eventually(lambda: world.db.dispatches.find_one({"_id": dropped, "release.confirmed_at": {"$exists": True}}))
    commits = Counter(e["payload"]["dispatch_id"] for e in await world.records("budget.commands", "budget.CommitBudget", 1))
    assert {i: commits[i] for i in ids if commits[i]} == {done: 1}

    # R-DSP-13: fraud proven after payment → refund of what was paid, forced exit of both parties requested.
    r = await world.http.post(f"/requests/{done}/fraud", json={"reason": "visit never took place"},
                              headers=auth(sub="agent-1", roles=["agency"]))
    assert r.status_code == 200 and r.json()["fraud"]["refund_claim"] == {"amount": 13_300, "status": "claimed"}
    fraud = [e["payload"] for e in await world.records("dispatch.events", "dispatch.FraudConfirmed", 1, {done})]
    assert fraud == [{"dispatch_id": done, "account_ids": ["acct-biz-s0", "acct-ex-1"], "refund_claim": 13_300,
                      "reason": "visit never took place"}]
    # ... and the refund, once repaid, goes back to the frame through budget's ledger, exactly once.
    r = await world.http.post(f"/requests/{done}/refund", json={"decision": "repaid", "note": "bank transfer received"},
                              headers=auth(sub="agent-1", roles=["agency"]))
    assert r.status_code == 200 and r.json()["fraud"]["refund_claim"]["status"] == "repaid", r.text
    again = await world.http.post(f"/requests/{done}/refund", json={"decision": "written_off", "note": "twice"},
                                  headers=auth(sub="agent-1", roles=["agency"]))
    assert again.status_code == 409
    credit = await world.command("budget.CreditRefund", done)
    assert (credit["amount"], credit["command_id"]) == (13_300, f"refund-{done}")
    answer = BudgetRefunded(frame_id=credit["frame_id"], dispatch_id=done, command_id=credit["command_id"], amount=13_300)
    await world.publish(answer, producer="budget")
    await world.publish(answer, producer="budget")
    credited = await eventually(lambda: world.db.dispatches.find_one(
        {"_id": done, "fraud.refund_claim.credit.credited_at": {"$exists": True}}))
    assert credited["fraud"]["refund_claim"]["credit"]["amount"] == 13_300
    settled = await world.records("dispatch.events", "dispatch.RefundSettled", 1, {done})
    assert [e["payload"]["decision"] for e in settled] == ["repaid"]


async def test_R_DSP_14_cancelled_while_reservation_pending_releases_it_when_it_arrives(world):
    d = await world.request("biz-p")
    cmd = await world.command("budget.ReserveBudget", d["dispatch_id"])
    r = await world.http.post(f"/requests/{d['dispatch_id']}/cancel", json={"reason": "changed plans"},
                              headers=owner("biz-p"))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    await world.reserved(cmd)
    release = await world.command("budget.ReleaseBudget", d["dispatch_id"])
    assert release["frame_id"] == cmd["frame_id"]
    assert (await world.get(d["dispatch_id"]))["status"] == "cancelled"


async def complete_visits(world: World, dispatch_id: str, *, minutes: int) -> None:
    """Schedule, check in and out, correct the time by a signed declaration, sign off, report (R-ANC-01)."""
    expert = auth(sub="acct-ex-1", roles=["expert"])
    r = await world.http.post(f"/requests/{dispatch_id}/schedule", json={}, headers=auth(**STAFF))
    assert r.status_code == 200 and r.json()["status"] == "scheduled", r.text
    loc = {"lat": 32.80, "lon": 130.71, "place": "client office"}
    r = await world.http.post(f"/requests/{dispatch_id}/visits", json={"location": loc, "accompanied_by": ["staff-1"]},
                              headers=expert)
    assert r.status_code == 201, r.text
    vid = r.json()["visit_id"]
    r = await world.http.post(f"/requests/{dispatch_id}/visits/{vid}/check-out", json={"location": loc}, headers=expert)
    assert r.status_code == 200 and r.json()["status"] == "visited", r.text
    start = datetime(DAY.year, DAY.month, DAY.day, 1, 0, tzinfo=UTC)
    r = await world.http.post(f"/requests/{dispatch_id}/visits/declarations", headers=expert, json={
        "visit_id": vid, "start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat(),
        "reason": "checked out late: phone battery empty", "signed": True, "signature": "Expert ex-1"})
    assert r.status_code == 201, r.text
    business = owner((await world.get(dispatch_id))["business_id"])
    r = await world.http.post(f"/requests/{dispatch_id}/visits/{vid}/sign-off", json={}, headers=business)
    assert r.status_code == 200, r.text
    early = await world.http.post(f"/requests/{dispatch_id}/confirm", json={}, headers=auth(sub="agent-1", roles=["agency"]))
    assert early.status_code == 409  # not reported yet (R-DSP-09)
    r = await world.http.post(f"/requests/{dispatch_id}/report", headers=expert,
                              json={"summary": "Mapped channels; proposed a D2C pilot and a wholesaler shortlist."})
    assert r.status_code == 200 and r.json()["status"] == "reported", r.text


async def test_R_DSP_03_concurrent_requests_never_exceed_the_free_cap(world):
    results = await asyncio.gather(*(world.request("biz-x") for _ in range(6)))
    statuses = Counter(d["status"] for d in results)
    assert statuses == {"accepted": 3, "refused": 3}
    assert {d["reason_code"] for d in results if d["status"] == "refused"} == {"free_cap_reached"}


async def test_R_DSP_01_R_DSP_06_R_EX_01_screening_refusals_are_named_stored_and_published(world):
    flyer = await world.request("biz-f", support_kinds=["flyer"])
    assert (flyer["status"], flyer["reason_code"]) == ("refused", "mere_production")
    assert flyer["refusals"][0]["rule"] == "R-DSP-06"
    events = await world.records("dispatch.events", "dispatch.DispatchStatusChanged", 2, {flyer["dispatch_id"]})
    mine = [e["payload"] for e in events]
    assert [(e["status"], e["reason_code"]) for e in mine] == [("requested", None), ("refused", "mere_production")]

    # The institution must act for the org it names; a token without it is refused outright (not stored).
    other = {**STAFF, "orgs": []}
    r = await world.http.post("/requests", headers=auth(**other), json={
        "business_id": "biz-f", "expert_id": "ex-1", "institution_id": INSTITUTION,
        "issue": ISSUE, "beyond_self_help": True, "needs_specialist": True,
        "planned_visits": [{"day": DAY.isoformat(), "hours": 2}]})
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")

    await world.expert("ex-2", related_business_ids=["biz-f"])
    related = await world.request("biz-f", expert="ex-2")
    assert related["reason_code"] == "expert_belongs_to_business"
    await world.expert("ex-3", unavailable=[{"start": (DAY - timedelta(days=1)).isoformat(), "end": DAY.isoformat(),
                                             "note": "long trip"}])
    assert (await world.request("biz-f", expert="ex-3"))["reason_code"] == "expert_unavailable"
    await world.expert("ex-4")
    assert (await world.request("biz-f", expert="ex-4"))["status"] == "accepted"
    e = ExpertChanged(expert_id="ex-4", account_id="acct-ex-4", change="suspended", status="suspended",
                      registered_fiscal_year=FY, name="Expert ex-4")
    env = await world.publish(e, producer="experts")
    await eventually(lambda: world.db.experts.find_one({"_id": "ex-4", "_seen": env.event_id}))
    assert (await world.request("biz-f", expert="ex-4"))["reason_code"] == "expert_suspended"

    # R-ID-06: an expert whose account was revoked (forced exit) is not dispatched.
    await world.expert("ex-5")
    env = await world.publish(AccountRevoked(account_id="acct-ex-5", reason="collusion"), producer="identity")
    await eventually(lambda: world.db.revoked_subjects.find_one({"_id": "acct-ex-5"}))
    assert (await world.request("biz-f", expert="ex-5"))["reason_code"] == "account_revoked"

    # R-PF-04: identity's events say the institution is now only a broad-support member → no dispatch right,
    # whatever its (older) token still says.
    other_org = {**STAFF, "orgs": [{**STAFF["orgs"][0], "org_id": "inst-2"}]}
    await world.bind("biz-f2")
    other_org["dlg"] = [{**d, "org_id": "inst-2"} for d in delegations("biz-f2")]
    body = {"business_id": "biz-f2", "expert_id": "ex-1", "institution_id": "inst-2",
            "issue": ISSUE, "beyond_self_help": True, "needs_specialist": True,
            "planned_visits": [{"day": DAY.isoformat(), "hours": 2}]}
    env = await world.publish(MembershipChanged(platform_id=PLATFORM, org_id="inst-2", member_role="institution"),
                              producer="identity")
    await eventually(lambda: world.db.memberships.find_one({"_seen": env.event_id}))
    r = await world.http.post("/requests", json=body, headers=auth(**other_org))
    assert (r.json()["status"], r.json()["reason_code"]) == ("refused", "not_dispatch_member")


async def test_R_DSP_02_route_B_needs_prior_platform_dispatch_held_consultation_and_cosignature(world):
    business = owner("biz-b2")
    expert = auth(sub="acct-ex-1", roles=["expert"])
    direct = {"business_id": "biz-b2", "expert_id": "ex-1", "issue": ISSUE, "issue_kind": "it_dx",
              "beyond_self_help": True, "needs_specialist": True, "planned_visits": [{"day": DAY.isoformat(), "hours": 2}]}
    r = await world.http.post("/requests", json=direct, headers=business)
    assert r.status_code == 201 and r.json()["status"] == "requested", r.text
    early = r.json()["dispatch_id"]
    r = await world.http.post(f"/requests/{early}/cosign", headers=auth(sub="someone", roles=["expert"]))
    assert r.status_code == 404  # not the requested expert: cannot even see it
    r = await world.http.post(f"/requests/{early}/cosign", headers=expert)
    assert r.status_code == 200 and r.json()["status"] == "refused"
    assert {x["code"] for x in r.json()["refusals"]} == {"no_prior_platform_dispatch", "no_web_consultation"}

    # A platform dispatch the business received (route A, visited and reported) ...
    a = await world.request("biz-b2")
    await world.reserved(await world.command("budget.ReserveBudget", a["dispatch_id"]))
    await eventually(lambda: world.status(a["dispatch_id"], "approved"))
    await complete_visits(world, a["dispatch_id"], minutes=120)
    # ... and a held web consultation with the expert (free of charge, R-DSP-11).
    r = await world.http.post("/consultations", headers=business, json={
        "business_id": "biz-b2", "expert_id": "ex-1", "subject": "Order system", "message": "Can you help us?"})
    assert r.status_code == 201, r.text
    cid = r.json()["consultation_id"]
    r = await world.http.post(f"/consultations/{cid}/messages", json={"text": "Yes: a cloud order system."}, headers=expert)
    assert len(r.json()["messages"]) == 2
    assert (await world.http.post(f"/consultations/{cid}/held", headers=business)).status_code == 403
    assert (await world.http.post(f"/consultations/{cid}/held", headers=expert)).json()["held"] is True

    r = await world.http.post("/requests", json=direct, headers=business)
    b = r.json()
    assert b["status"] == "requested" and b["route"] == "B"
    r = await world.http.post(f"/requests/{b['dispatch_id']}/cosign", headers=expert)
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    cmd = await world.command("budget.ReserveBudget", b["dispatch_id"])
    # Paid from the frame of the platform whose institution served the business before.
    assert (cmd["frame_id"], cmd["member_id"]) == (f"frame-{FY}-{PLATFORM}", INSTITUTION)
    again = await world.http.post(f"/requests/{b['dispatch_id']}/cosign", headers=expert)
    assert again.status_code == 409
    used = (await world.http.get("/businesses/biz-b2/free-dispatches", headers=business)).json()
    assert used["used"] == 2 and used["remaining_extended"] == 3  # both routes count together (R-DSP-03)


async def test_R_DSP_06_desk_refusal_while_reservation_pending_releases_it(world):
    d = await world.request("biz-desk")
    cmd = await world.command("budget.ReserveBudget", d["dispatch_id"])
    r = await world.http.post(f"/requests/{d['dispatch_id']}/refuse", json={"reason": "this is staff training in disguise"},
                              headers=auth(sub="agent-1", roles=["agency"]))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reason_code"]) == ("refused", "desk_discretion")
    assert "staff training in disguise" in r.json()["reason"]
    await world.reserved(cmd)
    assert (await world.command("budget.ReleaseBudget", d["dispatch_id"]))["frame_id"] == cmd["frame_id"]
    again = await world.http.post(f"/requests/{d['dispatch_id']}/refuse", json={"reason": "once more please"},
                                  headers=auth(sub="agent-1", roles=["agency"]))
    assert again.status_code == 409 and again.json()["current_status"] == "refused"
    used = (await world.http.get("/businesses/biz-desk/free-dispatches", headers=staff("biz-desk"))).json()
    assert used["used"] == 0


async def test_R_ID_07_R_ID_08_dispatch_takes_the_business_from_the_token_never_from_the_body(world):
    await world.bind("biz-victim")
    attacker = owner("biz-attacker")
    direct = {"expert_id": "ex-1", "issue": ISSUE, "beyond_self_help": True, "needs_specialist": True,
              "planned_visits": [{"day": DAY.isoformat(), "hours": 2}]}
    # another business's account cannot file, consult or read counts in the victim's name
    r = await world.http.post("/requests", json={**direct, "business_id": "biz-victim"}, headers=attacker)
    assert r.status_code == 403 and "biz-victim" in r.json()["detail"]
    r = await world.http.post("/consultations", headers=attacker, json={
        "business_id": "biz-victim", "expert_id": "ex-1", "subject": "Order system", "message": "hello"})
    assert r.status_code == 403
    assert (await world.http.get("/businesses/biz-victim/free-dispatches", headers=attacker)).status_code == 404
    assert (await world.http.get("/businesses/biz-victim/free-dispatches", headers=owner("biz-victim"))).status_code == 200
    # an account bound to no business (an id identity never issued) files nothing
    unbound = auth(sub="acct-nobody", roles=["business"])
    r = await world.http.post("/requests", json={**direct, "business_id": "biz-made-up"}, headers=unbound)
    assert r.status_code == 403
    r = await world.http.post("/requests", json=direct, headers=unbound)
    assert r.status_code == 403 and "not bound to a business" in r.json()["detail"]
    # without business_id, the request is the token's own business
    r = await world.http.post("/requests", json=direct, headers=attacker)
    assert r.status_code == 201 and r.json()["business_id"] == "biz-attacker", r.text

    # route A: only under the business's delegation, and the business's own account signs off and rates
    route_a = {**direct, "business_id": "biz-victim", "institution_id": INSTITUTION, "business_account_id": "staff-1"}
    r = await world.http.post("/requests", json=route_a, headers=auth(**STAFF))
    assert r.status_code == 403 and "delegated" in r.json()["detail"]
    r = await world.http.post("/requests", json={**route_a, "business_id": "biz-unproven"}, headers=staff("biz-unproven"))
    assert r.status_code == 422 and "prime account" in r.json()["detail"]
    r = await world.http.post("/requests", json=route_a, headers=staff("biz-victim"))
    assert r.status_code == 201, r.text
    assert r.json()["business_account_id"] == "acct-biz-victim"  # not the staff account it typed in
    did = r.json()["dispatch_id"]
    assert (await world.http.get(f"/requests/{did}", headers=owner("biz-victim"))).status_code == 200
    assert (await world.http.get(f"/requests/{did}", headers=attacker)).status_code == 404

    # R-ID-09: a revoked delegation stops working at once, although the token still lists it
    env = await world.publish(DelegationRevoked(delegation_id="dlg-biz-victim", business_id="biz-victim",
                                                org_id=INSTITUTION), producer="identity")
    await eventually(lambda: world.db.revoked_subjects.find_one({"_id": "dlg:dlg-biz-victim", "_seen": env.event_id}),
                     timeout=2)
    r = await world.http.post("/requests", json=route_a, headers=staff("biz-victim"))
    assert r.status_code == 403
    assert (await world.http.get("/businesses/biz-victim/free-dispatches", headers=staff("biz-victim"))).status_code == 404


async def test_R_DSP_12_a_request_right_after_confirmation_is_refused_every_time(world):
    """The block starts when dispatch confirms, not when ratings' RatingOwed arrives: no race (run 20 times, ten at
    once)."""
    async def one(n: int) -> tuple[str, str | None]:
        business = f"biz-race-{n}"
        d = await world.request(business)
        await world.reserved(await world.command("budget.ReserveBudget", d["dispatch_id"]))
        await eventually(lambda: world.status(d["dispatch_id"], "approved"))
        await complete_visits(world, d["dispatch_id"], minutes=60)
        r = await world.http.post(f"/requests/{d['dispatch_id']}/confirm", json={},
                                  headers=auth(sub="agent-1", roles=["agency"]))
        assert r.status_code == 200, r.text
        nxt = await world.request(business)  # at once: nothing from ratings has arrived
        return nxt["status"], nxt.get("reason_code")

    outcomes = []
    for batch in range(2):
        outcomes += await asyncio.gather(*(one(batch * 10 + i) for i in range(10)))
    assert Counter(outcomes) == Counter({("refused", "rating_pending"): 20})


async def test_R_DSP_08_R_DSP_14_silent_budget_is_resent_then_visible_then_retried(infra, tmp_path):
    """Budget never answers: the same ReserveBudget is re-sent, then the dispatch shows `budget_unanswered`; the
    agency retries, and the (late) answer completes the saga. Nothing waits silently."""
    ns = Namespace()
    svc = ServiceProcess("dispatch", infra, ns, tmp_path, DISPATCH_BUDGET_ANSWER_SECONDS="1",
                         DISPATCH_BUDGET_MAX_ATTEMPTS="2")
    w = World(infra, ns, svc.url)
    try:
        svc.start()
        await w.producer.start()
        await w.expert("ex-1")
        d = await w.request("biz-silent")
        did = d["dispatch_id"]
        assert d["status"] == "accepted"
        sent = await w.records("budget.commands", "budget.ReserveBudget", 2, {did})  # the re-send
        assert len({c["payload"]["command_id"] for c in sent}) == 1  # the same command: budget applies it once
        stuck = await eventually(lambda: w.status(did, "budget_unanswered"), timeout=15)
        assert stuck["reason_code"] == "budget_unanswered"
        events = await w.records("dispatch.events", "dispatch.DispatchStatusChanged", 2, {did})
        assert "budget_unanswered" in [e["payload"]["status"] for e in events]
        agency = auth(sub="agent-1", roles=["agency"])
        assert (await w.http.post(f"/requests/{did}/budget-retry", headers=staff("biz-silent"))).status_code == 403
        r = await w.http.post(f"/requests/{did}/budget-retry", headers=agency)
        assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
        await w.records("budget.commands", "budget.ReserveBudget", 3, {did})
        await w.reserved(sent[0]["payload"])  # budget answers at last
        await eventually(lambda: w.status(did, "approved"), timeout=15)
        again = await w.http.post(f"/requests/{did}/budget-retry", headers=agency)
        assert again.status_code == 409
    finally:
        await w.producer.stop()
        await w.http.aclose()
        svc.stop()
        await ns.drop(infra)


async def test_R_DSP_03_a_crash_between_slot_claim_and_request_write_loses_no_free_dispatch(infra, tmp_path):
    ns = Namespace()
    w = World(infra, ns, "")
    doomed = ServiceProcess("dispatch", infra, ns, tmp_path, FAULT_CRASH_AFTER_SLOT_CLAIM="true")
    try:
        doomed.start()
        await w.producer.start()
        await w.expert("ex-1")
        await w.bind("biz-crash")
        body = {"business_id": "biz-crash", "expert_id": "ex-1", "institution_id": INSTITUTION, "issue": ISSUE,
                "beyond_self_help": True, "needs_specialist": True, "planned_visits": [{"day": DAY.isoformat(), "hours": 2}]}
        with pytest.raises(httpx.HTTPError):  # the process dies mid-request
            await w.http.post(f"{doomed.url}/requests", json=body, headers=staff("biz-crash"))
        assert doomed.proc.wait(20) == 137
        assert await w.db.free_slots.count_documents({"business_id": "biz-crash"}) == 1  # claimed, never written

        healthy = ServiceProcess("dispatch", infra, ns, tmp_path, DISPATCH_SLOT_GRACE_SECONDS="1").start()
        try:
            await eventually(lambda: _none_left(w, "biz-crash"), timeout=20)
            results = [await w.http.post(f"{healthy.url}/requests", json=body, headers=staff("biz-crash"))
                       for _ in range(4)]
            assert [r.json()["status"] for r in results] == ["accepted", "accepted", "accepted", "refused"]
        finally:
            healthy.stop()
    finally:
        doomed.stop()
        await w.producer.stop()
        await w.http.aclose()
        await ns.drop(infra)


async def _none_left(w: World, business: str) -> bool:
    return await w.db.free_slots.count_documents({"business_id": business}) == 0


async def test_R_DSP_10_a_fee_above_the_reservation_is_a_visible_shortfall_the_agency_settles(world):
    d = await world.request("biz-short")
    did = d["dispatch_id"]
    await world.reserved(await world.command("budget.ReserveBudget", did))
    await eventually(lambda: world.status(did, "approved"))
    await complete_visits(world, did, minutes=120)
    agency = auth(sub="agent-1", roles=["agency"])
    assert (await world.http.post(f"/requests/{did}/confirm", json={}, headers=agency)).status_code == 200
    commit = await world.command("budget.CommitBudget", did)
    await world.publish(BudgetCommitted(frame_id=commit["frame_id"], dispatch_id=did, command_id=commit["command_id"],
                                        spent=9_000, returned=0, uncovered=1_000), producer="budget")
    paid = await eventually(lambda: world.status(did, "paid"))
    assert paid["shortfall"]["amount"] == 1_000 and paid["shortfall"]["status"] == "open"
    events = await world.records("dispatch.events", "dispatch.DispatchStatusChanged", 1, {did})
    assert [e["payload"]["reason_code"] for e in events if e["payload"]["status"] == "paid"] == ["fee_above_reservation"]
    body = {"decision": "written_off", "note": "the expert agreed; the frame was exhausted"}
    assert (await world.http.post(f"/requests/{did}/shortfall", json=body, headers=staff("biz-short"))).status_code == 403
    r = await world.http.post(f"/requests/{did}/shortfall", json=body, headers=agency)
    assert r.status_code == 200 and r.json()["shortfall"]["status"] == "written_off"
    assert (await world.http.post(f"/requests/{did}/shortfall", json=body, headers=agency)).status_code == 409


async def test_R_DSP_15_integrity_flags_reach_the_agency_queue_with_their_evidence_and_are_reviewed(world):
    """From dispatch's own events: a check-in in Tokyo for a business in Kumamoto, and a report copied from another
    dispatch's report, each raise one flag (not two, whatever is redelivered); the agency dismisses one; flags never
    change the dispatch."""
    agency = auth(sub="agent-1", roles=["agency"])
    reg = await world.publish(BusinessRegistered(business_id="biz-int-1", name="阿蘇みやげ店", prefecture="熊本県",
                                                 industry="小売業", employees=4), producer="identity")
    await eventually(lambda: world.db.businesses.find_one({"_id": "biz-int-1", "_seen": reg.event_id}))
    report = {"summary": "卸売依存から直販への転換を提案。EC の試行、道の駅での販売、既存顧客への案内を三か月で実施する計画。",
              "proposals": "月次で効果を確認する。"}
    ids = []
    for business in ("biz-int-1", "biz-int-2"):
        d = await world.request(business)
        cmd = await world.command("budget.ReserveBudget", d["dispatch_id"])
        await world.reserved(cmd)
        await eventually(lambda d=d: world.status(d["dispatch_id"], "approved"))
        ids.append(d["dispatch_id"])
    expert = auth(sub="acct-ex-1", roles=["expert"])
    for did, place in zip(ids, ({"lat": 35.68, "lon": 139.76, "place": "Tokyo"}, {"lat": 32.80, "lon": 130.71})):
        assert (await world.http.post(f"/requests/{did}/schedule", json={}, headers=auth(**STAFF))).status_code == 200
        r = await world.http.post(f"/requests/{did}/visits", json={"location": place}, headers=expert)
        vid = r.json()["visit_id"]
        r = await world.http.post(f"/requests/{did}/visits/{vid}/check-out", json={"location": place}, headers=expert)
        assert r.status_code == 200, r.text
        r = await world.http.post(f"/requests/{did}/report", json=report, headers=expert)
        assert r.status_code == 200, r.text

    async def flags(n):
        mine = []
        for did in ids:
            r = await world.http.get(f"/integrity/flags?dispatch_id={did}", headers=agency)
            assert r.status_code == 200, r.text
            mine += r.json()["items"]
        return mine if len(mine) >= n else None
    # the consumer reads every dispatch event of the module first: give it time on a loaded machine
    found = {(f["code"], f["dispatch_id"]): f for f in await eventually(lambda: flags(2), timeout=120)}
    copied = [f for (code, _), f in found.items() if code == "copied_report"]
    assert ("far_check_in", ids[0]) in found and len(found) == 2 and len(copied) == 1
    assert found[("far_check_in", ids[0])]["evidence"]["km_from_prefecture_seat"] > 800
    # the two reports arrive on different partitions: whichever is compared second is flagged, naming the other
    assert {copied[0]["dispatch_id"], copied[0]["evidence"]["similar_to"]} == set(ids)
    assert (await world.get(ids[0]))["status"] == "reported"  # a flag never acts (R-DSP-13 stays human)

    fid = found[("far_check_in", ids[0])]["flag_id"]
    assert (await world.http.get("/integrity/flags", headers=auth(**STAFF))).status_code == 403
    r = await world.http.post(f"/integrity/flags/{fid}/review", json={"decision": "dismissed", "note": "met in Tokyo"},
                              headers=agency)
    assert r.status_code == 200 and r.json()["status"] == "dismissed"
    again = await world.http.post(f"/integrity/flags/{fid}/review", json={"decision": "escalated", "note": "x" * 3},
                                  headers=agency)
    assert again.status_code == 409


async def test_R_REC_08_a_paid_dispatch_sends_its_outcome_survey_and_the_answer_counts_in_the_kpi(world):
    agency = auth(sub="agent-1", roles=["agency"])
    d = await world.request("biz-out-1")
    did = d["dispatch_id"]
    await world.reserved(await world.command("budget.ReserveBudget", did))
    await eventually(lambda: world.status(did, "approved"))
    await complete_visits(world, did, minutes=120)
    r = await world.http.post(f"/requests/{did}/confirm", json={}, headers=agency)
    assert r.status_code == 200, r.text
    commit = await world.command("budget.CommitBudget", did)
    await world.publish(BudgetCommitted(frame_id=commit["frame_id"], dispatch_id=did, command_id=commit["command_id"],
                                        spent=commit["fee"] + commit["travel"], returned=0), producer="budget")
    await eventually(lambda: world.status(did, "paid"))

    async def survey():
        envs = await world.records("notifications.commands", "notifications.Notify", 1)
        mine = [e["payload"] for e in envs if e["payload"]["params"].get("dispatch_id") == did]
        return mine or None
    sent = await eventually(survey, timeout=30)
    assert [(n["recipient_id"], n["template"], n["params"]["months"]) for n in sent] == [
        ("acct-biz-out-1", "outcome_survey", "0")]  # the 12-month survey is not due yet
    body = {"results_achieved": True, "actions_taken": ["new_sales_channel"], "sales_change_pct": 8.5}
    assert (await world.http.post(f"/requests/{did}/outcomes/0", json=body, headers=owner("biz-other"))).status_code == 404
    r = await world.http.post(f"/requests/{did}/outcomes/0", json=body, headers=owner("biz-out-1"))
    assert r.status_code == 200, r.text
    assert (await world.http.post(f"/requests/{did}/outcomes/0", json=body, headers=owner("biz-out-1"))).status_code == 409
    assert (await world.http.post(f"/requests/{did}/outcomes/12", json=body,
                                  headers=owner("biz-out-1"))).status_code == 200  # answered early: fine
    kpi = await world.http.get(f"/outcomes/kpi?by=expert_id&fiscal_year={FY}", headers=agency)
    assert kpi.status_code == 200 and kpi.json()["target"] == 0.65
    assert kpi.json()["groups"] == [{"expert_id": "ex-1", "suppressed": True}]  # fewer than 5 businesses (R-REC-07)
    # the answers reached the counters the KPI reads (counted once for the business, though two surveys answered)
    key = f"expert_id|{FY}|*"

    async def counted():
        doc = await world.db.outcome_counters.find_one({"_id": key})
        g = ((doc or {}).get("groups") or {}).get("ex-1") or {}
        return g if g.get("answered") and not await world.db.outcome_surveys.count_documents(
            {"dispatch_id": did, "tally": "pending"}) else None
    g = await eventually(counted)
    assert g["answered"] == g["results"] == 1 and g["supported"] >= 1
    assert (await world.http.get("/outcomes/kpi", headers=owner("biz-out-1"))).status_code == 403


async def test_R_EX_06_capacity_pause_and_a_missed_response_deadline_with_reassignment(world):
    """An expert at the cap of open dispatches, or paused, is refused at screening; an approved dispatch the expert
    does not acknowledge by the deadline goes to the agency's queue, and the agency gives it to another expert."""
    await world.expert("ex-cap", open_cap=1)
    first = await world.request("biz-cap-1", expert="ex-cap")
    assert first["status"] == "accepted", first
    second = await world.request("biz-cap-2", expert="ex-cap")
    assert (second["status"], second["reason_code"]) == ("refused", "expert_at_capacity")
    await world.expert("ex-paused", paused=True)
    third = await world.request("biz-cap-3", expert="ex-paused")
    assert (third["status"], third["reason_code"]) == ("refused", "expert_paused")

    await world.reserved(await world.command("budget.ReserveBudget", first["dispatch_id"]))
    approved = await eventually(lambda: world.status(first["dispatch_id"], "approved"))
    assert approved["respond_by"]
    # two business days pass without an answer (the test moves the deadline instead of the clock)
    await world.db.dispatches.update_one({"_id": first["dispatch_id"]},
                                         {"$set": {"respond_by": datetime.now(UTC) - timedelta(minutes=1)}})
    agency = auth(sub="agent-1", roles=["agency"])

    async def alerted():
        r = await world.http.get("/integrity/flags?expert_id=ex-cap&code=response_overdue", headers=agency)
        return r.json()["items"] or None
    flag = (await eventually(alerted, timeout=30))[0]
    assert flag["rule"] == "R-EX-06" and flag["dispatch_id"] == first["dispatch_id"]
    await world.expert("ex-free")
    r = await world.http.post(f"/requests/{first['dispatch_id']}/reassign", headers=agency,
                              json={"expert_id": "ex-paused", "reason": "no answer in two business days"})
    assert r.status_code == 422 and r.json()["reasons"][0]["code"] == "expert_paused"
    r = await world.http.post(f"/requests/{first['dispatch_id']}/reassign", headers=agency,
                              json={"expert_id": "ex-free", "reason": "no answer in two business days"})
    assert r.status_code == 200 and r.json()["expert_id"] == "ex-free", r.text
    r = await world.http.post(f"/requests/{first['dispatch_id']}/acknowledge",
                              headers=auth(sub="acct-ex-free", roles=["expert"]))
    assert r.status_code == 200 and r.json()["expert_ack_at"], r.text


async def test_R_EX_06_a_request_on_a_weekday_the_expert_does_not_work_is_refused_in_words(world):
    """Dispatch learns the expert's weekday calendar from `ExpertChanged` and screens the planned days against it;
    an expert whose event carries no calendar (as before the field existed) works any day."""
    off = DAY.weekday()
    await world.expert("ex-weekdays", weekdays=[w for w in range(7) if w != off])
    refused = await world.request("biz-wd-1", expert="ex-weekdays")
    assert (refused["status"], refused["reason_code"]) == ("refused", "expert_off_weekday"), refused
    assert f"{DAY.isoformat()} is a " in refused["reason"] and "does not take visits" in refused["reason"]
    moved = [{"day": (DAY + timedelta(days=1)).isoformat(), "hours": 3}]
    ok = await world.request("biz-wd-2", expert="ex-weekdays", planned_visits=moved)
    assert ok["status"] == "accepted", ok
    await world.expert("ex-anyday")  # no weekdays in the event: any day
    assert (await world.request("biz-wd-3", expert="ex-anyday"))["status"] == "accepted"
    # reassignment checks the calendar too: a problem document naming the rule
    agency = auth(sub="agent-1", roles=["agency"])
    d = await world.request("biz-wd-4", expert="ex-anyday")
    r = await world.http.post(f"/requests/{d['dispatch_id']}/reassign", headers=agency,
                              json={"expert_id": "ex-weekdays", "reason": "the first expert fell ill"})
    assert r.status_code == 422, r.text
    assert r.json()["reasons"][0]["code"] == "expert_off_weekday" and r.json()["reasons"][0]["rule"] == "R-EX-06"
