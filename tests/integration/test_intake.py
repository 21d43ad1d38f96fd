"""R-POR-05 application intake on real Kafka + MongoDB: a business's draft is pre-filled from the profile recommend
learnt from identity's events (each field with its source), autosaved (a stale version gets 409 with the current
draft), its attachment uploaded resumably — the service killed after some chunks and restarted, the client sending
only the missing chunks — submitted for a receipt, returned by the agency, fixed, resubmitted and accepted; a Notify
command reaches the business for each status change. A closed programme refuses a late submission with a problem."""
from __future__ import annotations

import hashlib
import os
import uuid

import httpx
import pytest

from contracts import Envelope
from contracts.events.identity import BusinessProfileChanged, FinancialPeriod
from tests.integration.test_recommend_service import auth, notifies, prime, send
from tests.support import eventually, read_topic

PROGRAMME, SECOND, CLOSED = "fy2020-jigyo-shokei", "fy2020-monozukuri-renkei", "fy2009-shinjigyo"
CHUNK = 1024


@pytest.mark.parametrize("blob_store", ["local", "s3"])
async def test_R_POR_05_prefill_autosave_resumable_upload_submit_review_and_notices(infra, ns, services, tmp_path,
                                                                                    blob_store, request):
    # attachments on local disk (the default) or in an S3-compatible object store (BLOB_STORE=s3, a real server)
    env = ({"INTAKE_BLOB_DIR": str(tmp_path / "blobs")} if blob_store == "local"
           else {**request.getfixturevalue("s3"), "S3_BUCKET": f"intake-{uuid.uuid4().hex[:8]}"})
    svc = services("recommend", **env)
    bid, owner = f"biz-{uuid.uuid4().hex[:8]}", f"acc-{uuid.uuid4().hex[:8]}"
    await send(infra, ns, Envelope.wrap(BusinessProfileChanged(
        business_id=bid, profile_version=3, changed=["financials"], name="熊本精工株式会社", prefecture="熊本県",
        industry="製造業", employees=12, financials=[FinancialPeriod(fiscal_year=2023, sales=90_000_000),
                                                      FinancialPeriod(fiscal_year=2024, sales=100_000_000)]),
        producer="identity", actor=owner))
    me, agency = prime(owner, bid), auth("agency-1", "agency")
    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
        async def profile_known():
            return (await http.get(f"/businesses/{bid}", headers=me)).status_code == 200
        await eventually(profile_known, timeout=40)

        # another business cannot open an application for BIZ
        r = await http.post(f"/programmes/{PROGRAMME}/applications", headers=prime("acc-x", "biz-x"),
                            json={"business_id": bid})
        assert r.status_code == 403
        # the draft: pre-filled from the profile with its source; the rest typed
        r = await http.post(f"/programmes/{PROGRAMME}/applications", headers=me, json={})
        assert r.status_code == 201, r.text
        app = r.json()
        aid, fields = app["application_id"], app["fields"]
        assert fields["business_name"] == {"value": "熊本精工株式会社", "source": "profile v3 (identity)"}
        assert fields["latest_sales"] == {"value": 100_000_000, "source": "profile v3 (identity)"}
        assert fields["plan"] == {"value": None, "source": "typed"} and app["version"] == 1
        assert app["form"]["deadline"] and app["status"] == "draft"
        # an outsider does not see it
        assert (await http.get(f"/applications/{aid}", headers=prime("acc-x", "biz-x"))).status_code == 404

        # autosave: last write wins by version; the same save again is idempotent; a stale one gets 409 + current
        save = {"version": 1, "values": {"successor": "熊本 次郎", "employees": 13}}
        r = await http.patch(f"/applications/{aid}", headers=me, json=save)
        assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["fields"]["employees"]["source"] == "typed"
        r = await http.patch(f"/applications/{aid}", headers=me, json=save)
        assert r.status_code == 200 and r.json()["version"] == 2
        r = await http.patch(f"/applications/{aid}", headers=me, json={"version": 1, "values": {"plan": "古い"}})
        assert r.status_code == 409 and r.json()["current"]["version"] == 2, r.text
        assert r.headers["content-type"].startswith("application/problem+json")

        # submitting without the plan and the business plan document: refused with what is missing
        r = await http.post(f"/applications/{aid}/submit", headers=me)
        assert r.status_code == 422 and r.json()["missing"] == ["plan", "document:business_plan"], r.text
        r = await http.patch(f"/applications/{aid}", headers=me, json={"version": 2, "values": {"plan": "新工場の建設"}})
        assert r.json()["version"] == 3

        # resumable upload: 6 chunks; 3 sent, then the service is killed and restarted; only the missing 3 are sent
        data = os.urandom(CHUNK * 5 + 300)
        chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
        r = await http.post(f"/applications/{aid}/uploads", headers=me, json={
            "document": "business_plan", "name": "事業計画書.pdf", "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "content_type": "application/pdf", "chunk_size": CHUNK})
        assert r.status_code == 201, r.text
        up = r.json()["upload_id"]
        assert r.json()["chunks"] == 6

        async def put(n: int) -> httpx.Response:
            return await http.put(f"/uploads/{up}/chunks/{n}", headers={**me, "x-chunk-sha256": hashlib.sha256(
                chunks[n]).hexdigest(), "content-type": "application/octet-stream"}, content=chunks[n])
        for n in (0, 1, 2):
            assert (await put(n)).status_code == 200
        assert (await put(1)).json()["missing"] == [3, 4, 5]  # a chunk sent twice is idempotent
        bad = await http.put(f"/uploads/{up}/chunks/3", headers={**me, "x-chunk-sha256": "0" * 64}, content=chunks[3])
        assert bad.status_code == 422  # a corrupted chunk is refused, not stored
        assert (await http.post(f"/uploads/{up}/complete", headers=me)).status_code == 409  # chunks missing
        svc.stop()
        svc.start()
        status = (await http.get(f"/uploads/{up}", headers=me)).json()
        assert status["present"] == [0, 1, 2] and status["missing"] == [3, 4, 5]
        sent = [n for n in status["missing"]]
        for n in sent:
            assert (await put(n)).status_code == 200
        assert sent == [3, 4, 5]
        r = await http.post(f"/uploads/{up}/complete", headers=me)
        assert r.status_code == 200 and r.json()["status"] == "complete", r.text
        assert (await http.get(f"/applications/{aid}", headers=me)).json()["attachments"] == {"business_plan": up}

        # submit: a receipt with the arrival time; retried, the same receipt
        r = await http.post(f"/applications/{aid}/submit", headers=me)
        assert r.status_code == 200, r.text
        receipt = r.json()
        assert receipt["receipt_number"] and receipt["accepted_at"] and receipt["submission"] == 1
        assert (await http.post(f"/applications/{aid}/submit", headers=me)).json() == receipt

        # the agency reviews: the business cannot; the list shows it; returned with a reason
        assert (await http.get("/applications", headers=me)).status_code == 403
        page = (await http.get("/applications?status=submitted&limit=200", headers=agency)).json()
        assert aid in [a["application_id"] for a in page["items"]]
        r = await http.post(f"/applications/{aid}/review", headers=agency, json={"decision": "return"})
        assert r.status_code == 422  # a return needs its reason
        r = await http.post(f"/applications/{aid}/review", headers=agency,
                            json={"decision": "return", "reason": "後継者の経歴を記入してください"})
        assert r.status_code == 200 and r.json()["status"] == "returned", r.text

        # the business fixes and resubmits: a new receipt; accepted
        v = (await http.get(f"/applications/{aid}", headers=me)).json()["version"]
        r = await http.patch(f"/applications/{aid}", headers=me, json={"version": v, "values": {
            "successor": "熊本 次郎（専務取締役、入社15年）"}})
        assert r.status_code == 200
        r = await http.post(f"/applications/{aid}/submit", headers=me)
        assert r.status_code == 200 and r.json()["submission"] == 2 and r.json()["receipt_number"] != receipt["receipt_number"]
        r = await http.post(f"/applications/{aid}/review", headers=agency, json={"decision": "accept"})
        assert r.status_code == 200 and r.json()["status"] == "accepted"
        assert (await http.patch(f"/applications/{aid}", headers=me, json={"version": 9, "values": {}})).status_code == 409

        # in time with the attachment's bytes still arriving: the receipt comes on arrival; the reviewer waits for the
        # transfer, which finishes (and is verified) after the submission
        other = (await http.post(f"/programmes/{SECOND}/applications", headers=me, json={})).json()
        oid = other["application_id"]
        await http.patch(f"/applications/{oid}", headers=me, json={"version": other["version"], "values": {
            "plan": "新製品の試作", "investment_yen": 5_000_000}})
        doc = b"%PDF-1.4 plan" * 100
        r = await http.post(f"/applications/{oid}/uploads", headers=me, json={
            "document": "business_plan", "name": "plan.pdf", "size": len(doc), "sha256": hashlib.sha256(doc).hexdigest(),
            "content_type": "application/pdf"})
        late_up = r.json()["upload_id"]
        r = await http.post(f"/applications/{oid}/submit", headers=me)
        assert r.status_code == 200 and r.json()["pending_uploads"] == {"business_plan": late_up}, r.text
        r = await http.post(f"/applications/{oid}/review", headers=agency, json={"decision": "accept"})
        assert r.status_code == 409 and r.json()["code"] == "attachments_pending"
        await http.put(f"/uploads/{late_up}/chunks/0", headers={**me, "x-chunk-sha256": hashlib.sha256(doc).hexdigest()},
                       content=doc)
        assert (await http.post(f"/uploads/{late_up}/complete", headers=me)).json()["status"] == "complete"
        got = (await http.get(f"/applications/{oid}", headers=me)).json()
        assert got["attachments"] == {"business_plan": late_up} and got["pending_uploads"] == {}
        assert (await http.post(f"/applications/{oid}/review", headers=agency, json={"decision": "accept"})).status_code == 200

        # a closed programme: a submission arriving after its deadline is refused with a problem document
        closed = (await http.post(f"/programmes/{CLOSED}/applications", headers=me, json={})).json()
        r = await http.post(f"/applications/{closed['application_id']}/submit", headers=me)
        assert r.status_code == 409 and r.json()["code"] == "deadline_passed", r.text

    # a Notify to the business for every status change: submitted, returned, submitted, accepted
    async def notices():
        found = [n for n in await notifies(infra, ns, 1) if n["template"] == "application_status"
                 and n["params"]["application_id"] == aid]
        return found if len(found) >= 4 else None
    found = await eventually(notices, timeout=40)
    assert [n["params"]["status"] for n in found] == ["submitted", "returned", "submitted", "accepted"]
    assert all(n["recipient_id"] == bid and n["recipient_kind"] == "business" for n in found)
    assert "後継者の経歴" in found[1]["params"]["reason_ja"]
    events = [r.value for r in await read_topic(infra.kafka, ns.topic("recommend.events"), min_count=4)]
    kinds = [t for t in ("ApplicationSubmitted", "ApplicationReturned", "ApplicationAccepted")
             if any(t.encode() in e and aid.encode() in e for e in events)]
    assert kinds == ["ApplicationSubmitted", "ApplicationReturned", "ApplicationAccepted"]
