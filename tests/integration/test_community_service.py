"""The community service on real Kafka + MongoDB: ask → answer → reply event and notice; moderation with reasons and
the report queue (R-POR-02); needs and offers whose contact details show only after both sides consent (R-POR-03)."""
from __future__ import annotations

import json

import httpx
import pytest

from tests.support import eventually, read_topic, token


def auth(sub: str, *roles: str, biz: str | None = None) -> dict:
    claims = {"biz": [{"id": biz, "role": "prime"}]} if biz else {}
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), **claims)}"}


ASKER = auth("acc-asker", "business", biz="corp-asker")
ASKER_MEMBER = auth("acc-asker-member", "business", biz="corp-asker")
EXPERT = auth("acc-expert", "expert")
PEER = auth("acc-peer", "business", biz="corp-peer")
STAFF = auth("acc-staff", "institution")
AGENCY = auth("acc-agency", "agency")


@pytest.fixture
def community(services):
    return services("community")


async def messages(infra, ns, topic: str, kind: str, min_count: int = 1) -> list[dict]:
    async def check():
        recs = await read_topic(infra.kafka, ns.topic(topic), min_count=min_count, timeout=5)
        got = [json.loads(r.value) for r in recs if json.loads(r.value)["event_type"] == kind]
        return got if len(got) >= min_count else None
    return await eventually(check, timeout=40)


async def test_R_POR_02_ask_answer_reply_event_notice_and_accepted_answer(infra, ns, community):
    async with httpx.AsyncClient(base_url=community.url, timeout=15) as http:
        r = await http.post("/threads", headers=ASKER, json={
            "category": "succession", "title": "親族外承継の進め方", "body": "従業員への承継を考えています。何から始めますか。",
            "business_id": "corp-someone-else"})
        assert r.status_code == 403, r.text  # a typed-in business the caller does not act for
        r = await http.post("/threads", headers=ASKER, json={
            "category": "succession", "title": "親族外承継の進め方", "body": "従業員への承継を考えています。何から始めますか。"})
        assert r.status_code == 201, r.text
        t = r.json()
        assert t["party"] == {"kind": "business", "id": "corp-asker"} and t["author_kind"] == "business"
        tid = t["thread_id"]
        # a senior owner: a business account that opted in as mentor
        assert (await http.put("/mentors/me", headers=PEER, json={"mentor": True})).json()["mentor"] is True
        r = await http.post(f"/threads/{tid}/posts", headers=EXPERT, json={"body": "まず事業承継・引継ぎ支援センターへ。"})
        assert r.status_code == 201, r.text
        answer = r.json()
        assert answer["author_kind"] == "expert"
        peer = (await http.post(f"/threads/{tid}/posts", headers=PEER, json={"body": "私は3年かけました。"})).json()
        assert peer["author_kind"] == "senior_owner"
        assert (await http.post(f"/threads/{tid}/posts", headers=STAFF, json={"body": "x"})).status_code == 403
        # the reply event names the thread's author, and the asker's business is notified
        reply = (await messages(infra, ns, "community.events", "community.ReplyPosted", 2))
        mine = next(e for e in reply if e["payload"]["post_id"] == answer["post_id"])
        assert mine["key"] == tid and mine["payload"]["thread_author_account_id"] == "acc-asker"
        assert mine["payload"]["thread_party_id"] == "corp-asker"
        notices = await messages(infra, ns, "notifications.commands", "notifications.Notify", 2)
        n = next(e["payload"] for e in notices if e["payload"]["notification_id"] == f"community-reply:{answer['post_id']}")
        assert n["recipient_kind"] == "business" and n["recipient_id"] == "corp-asker" and n["template"] == "community_reply"
        # only the asker's side marks; any account of the asking business may
        mark = f"/threads/{tid}/posts/{answer['post_id']}/mark"
        assert (await http.post(mark, headers=PEER, json={"mark": "accepted"})).status_code == 403
        r = await http.post(mark, headers=ASKER_MEMBER, json={"mark": "accepted"})
        assert r.status_code == 200 and r.json()["mark"] == "accepted", r.text
        assert (await http.get(f"/threads/{tid}", headers=PEER)).json()["accepted_post_id"] == answer["post_id"]
        posts = (await http.get(f"/threads/{tid}/posts", headers=STAFF)).json()
        assert [p["post_id"] for p in posts["items"]] == [answer["post_id"], peer["post_id"]]
        listed = (await http.get("/threads?category=succession", headers=STAFF)).json()["items"]
        assert [x["thread_id"] for x in listed] == [tid] and listed[0]["replies"] == 2
        assert (await http.get("/threads?category=sales", headers=STAFF)).json()["items"] == []


async def test_R_POR_02_moderation_hold_hide_restore_with_reasons_and_the_report_queue(infra, ns, community):
    async with httpx.AsyncClient(base_url=community.url, timeout=15) as http:
        tid = (await http.post("/threads", headers=ASKER, json={
            "category": "sales", "title": "販路開拓", "body": "県外への販路を探しています。"})).json()["thread_id"]
        post = (await http.post(f"/threads/{tid}/posts", headers=PEER, json={"body": "うちの商品を買って! 090-xxxx"})).json()
        pid = post["post_id"]
        # anyone signed in reports, with a reason; the queue is the agency's and paged
        assert (await http.post(f"/threads/{tid}/reports", headers=STAFF, json={"post_id": pid, "reason": ""})
                ).status_code == 422
        for who in (STAFF, ASKER):
            r = await http.post(f"/threads/{tid}/reports", headers=who, json={"post_id": pid, "reason": "宣伝と電話番号の掲載"})
            assert r.status_code == 201, r.text
        r = await http.post(f"/threads/{tid}/reports", headers=EXPERT, json={"reason": "thread is off-topic"})
        thread_report = r.json()["report_id"]
        assert (await http.get("/moderation/reports", headers=ASKER)).status_code == 403
        page1 = (await http.get("/moderation/reports?limit=2", headers=AGENCY)).json()
        assert len(page1["items"]) == 2 and page1["next_after"]
        page2 = (await http.get(f"/moderation/reports?limit=2&after={page1['next_after']}", headers=AGENCY)).json()
        assert [x["target_id"] for x in page1["items"] + page2["items"]] == [pid, pid, tid] and not page2["next_after"]
        # moderation needs the agency and a reason
        mod = f"/threads/{tid}/posts/{pid}/moderation"
        assert (await http.post(mod, headers=ASKER, json={"action": "hold", "reason": "looks like spam"})).status_code == 403
        assert (await http.post(mod, headers=AGENCY, json={"action": "hold", "reason": ""})).status_code == 422
        r = await http.post(mod, headers=AGENCY, json={"action": "hold", "reason": "電話番号の掲載を確認中"})
        assert r.status_code == 200 and r.json()["status"] == "held", r.text
        assert (await http.post(mod, headers=AGENCY, json={"action": "hold", "reason": "again please"})).status_code == 409
        # others see that it was removed, not what it said; its author sees the reason
        other = (await http.get(f"/threads/{tid}/posts", headers=STAFF)).json()["items"][0]
        assert other["status"] == "held" and other["body"] is None and other["moderation"] is None
        author = (await http.get(f"/threads/{tid}/posts", headers=PEER)).json()["items"][0]
        assert author["body"].startswith("うちの商品") and author["moderation"]["reason"] == "電話番号の掲載を確認中"
        # the two reports on the post left the queue; the thread's stays until dismissed
        queue = (await http.get("/moderation/reports", headers=AGENCY)).json()["items"]
        assert [x["report_id"] for x in queue] == [thread_report]
        r = await http.post(mod, headers=AGENCY, json={"action": "hide", "reason": "個人の電話番号を含むため非表示"})
        assert r.json()["status"] == "hidden"
        assert (await http.post(mod, headers=AGENCY, json={"action": "restore", "reason": "番号を削除する前提で再表示"})
                ).json()["status"] == "visible"
        assert (await http.get(f"/threads/{tid}/posts", headers=STAFF)).json()["items"][0]["body"].startswith("うちの商品")
        # a whole thread held: out of the list, its author sees why
        r = await http.post(f"/threads/{tid}/moderation", headers=AGENCY, json={"action": "hold", "reason": "話題の確認中です"})
        assert r.status_code == 200, r.text
        assert (await http.get("/threads", headers=STAFF)).json()["items"] == []
        assert (await http.get(f"/threads/{tid}", headers=STAFF)).json()["title"] is None
        assert (await http.get(f"/threads/{tid}", headers=ASKER_MEMBER)).json()["moderation"]["reason"] == "話題の確認中です"
        assert (await http.post(f"/threads/{tid}/posts", headers=EXPERT, json={"body": "..."})).status_code == 409
        assert (await http.get(f"/threads/{tid}/posts", headers=STAFF)).json()["items"] == []
        assert [x["post_id"] for x in (await http.get(f"/threads/{tid}/posts", headers=PEER)).json()["items"]] == [pid]
        assert len((await http.get(f"/threads/{tid}/posts", headers=ASKER)).json()["items"]) == 1
        assert (await http.get("/moderation/reports", headers=AGENCY)).json()["items"] == []
        await http.post(f"/threads/{tid}/moderation", headers=AGENCY, json={"action": "restore", "reason": "問題なしと判断"})
        assert [x["thread_id"] for x in (await http.get("/threads", headers=STAFF)).json()["items"]] == [tid]
        # a dismissal also carries a reason
        rid = (await http.post(f"/threads/{tid}/reports", headers=STAFF, json={"reason": "not sure this is ok"})).json()["report_id"]
        assert (await http.post(f"/moderation/reports/{rid}/dismiss", headers=AGENCY, json={"reason": ""})).status_code == 422
        assert (await http.post(f"/moderation/reports/{rid}/dismiss", headers=AGENCY, json={"reason": "規約違反なし"})
                ).status_code == 204
        assert (await http.get("/moderation/reports", headers=AGENCY)).json()["items"] == []
    # every state change is an event, audited by the outbox; the moderation reasons travel with them
    moderated = await messages(infra, ns, "community.events", "community.ContentModerated", 5)
    assert [e["payload"]["action"] for e in moderated] == ["hold", "hide", "restore", "hold", "restore"]
    assert all(e["payload"]["reason"] and e["actor"] == "acc-agency" for e in moderated)
    notices = await messages(infra, ns, "notifications.commands", "notifications.Notify", 6)
    told = [e["payload"] for e in notices if e["payload"]["template"] == "community_moderated"]
    assert {n["recipient_id"] for n in told} == {"acc-peer", "acc-asker"}
    # ... and each is in the service's audit trail, with who did it
    from pymongo import AsyncMongoClient
    client = AsyncMongoClient(infra.mongo)
    try:
        async def audited():
            docs = [d async for d in client[ns.db("community")].audit.find({"action": "community.ContentModerated"})]
            return docs if len(docs) >= 5 else None
        entries = await eventually(audited, timeout=20)
        assert {d["actor"] for d in entries} == {"acc-agency"}
        reports = [d async for d in client[ns.db("community")].audit.find({"action": "community.AbuseReported"})]
        assert len(reports) == 4
    finally:
        await client.close()


async def test_R_POR_03_contact_details_hidden_until_mutual_consent(infra, ns, community):
    owner_contact = {"name": "山田 太郎", "email": "yamada@owner.example.jp", "phone": "092-000-0000"}
    seeker_contact = {"name": "佐藤 花子", "email": "sato@seeker.example.jp"}
    async with httpx.AsyncClient(base_url=community.url, timeout=15) as http:
        r = await http.post("/postings", headers=ASKER, json={
            "direction": "offer", "kind": "successor", "title": "製造業の事業を譲ります", "body": "後継者を探しています。",
            "region": "福岡県", "industry": "製造業", "contact": owner_contact})
        assert r.status_code == 201, r.text
        posting = r.json()
        pg = posting["posting_id"]
        assert posting["contact"] == owner_contact  # the owner sees its own
        # an expert offers only expert help
        r = await http.post("/postings", headers=EXPERT, json={
            "direction": "offer", "kind": "partner", "title": "partner", "body": "b", "region": "福岡県",
            "industry": "製造業", "contact": seeker_contact})
        assert r.status_code == 403
        # searchable by indexed filters, paged; never with the contact
        for q in ("", "?kind=successor", "?region=福岡県&industry=製造業", "?direction=offer&kind=successor&region=福岡県"):
            items = (await http.get(f"/postings{q}", headers=PEER)).json()["items"]
            assert [x["posting_id"] for x in items] == [pg], q
            assert items[0]["contact"] is None
        assert (await http.get("/postings?region=大阪府", headers=PEER)).json()["items"] == []
        assert (await http.get(f"/postings/{pg}", headers=PEER)).json()["contact"] is None
        # interest: the owner cannot be interested in its own
        assert (await http.post(f"/postings/{pg}/interests", headers=ASKER_MEMBER, json={
            "message": "x", "contact": seeker_contact})).status_code == 409
        r = await http.post(f"/postings/{pg}/interests", headers=PEER, json={
            "message": "関心があります。", "contact": seeker_contact})
        assert r.status_code == 201, r.text
        match = r.json()
        mid = match["match_id"]
        assert match["owner_contact"] is None and match["interested_contact"] is None
        assert (await http.post(f"/postings/{pg}/interests", headers=PEER, json={
            "message": "again", "contact": seeker_contact})).status_code == 409
        assert [m["match_id"] for m in (await http.get("/me/matches", headers=PEER)).json()["items"]] == [mid]
        assert [x["posting_id"] for x in (await http.get("/me/postings", headers=ASKER_MEMBER)).json()["items"]] == [pg]
        assert (await http.get("/me/postings", headers=PEER)).json()["items"] == []
        # before both consent: absent for both sides
        listed = (await http.get(f"/postings/{pg}/interests", headers=ASKER)).json()["items"]
        assert [m["match_id"] for m in listed] == [mid] and listed[0]["interested_contact"] is None
        assert (await http.get(f"/postings/{pg}/interests", headers=PEER)).status_code == 403
        r = await http.post(f"/matches/{mid}/consent", headers=ASKER)
        assert r.status_code == 200 and r.json()["consent"] == {"owner": True, "interested": False}
        r = await http.post(f"/matches/{mid}/consent", headers=ASKER_MEMBER)  # the same side again: unchanged
        assert r.status_code == 200 and r.json()["status"] == "interested"
        for h in (ASKER, PEER):
            m = (await http.get(f"/matches/{mid}", headers=h)).json()
            assert m["status"] == "interested" and m["owner_contact"] is None and m["interested_contact"] is None
        # a third party: the match does not exist for it
        third = auth("acc-third", "business", biz="corp-third")
        for h in (third, EXPERT):
            assert (await http.get(f"/matches/{mid}", headers=h)).status_code == 404
            assert (await http.post(f"/matches/{mid}/consent", headers=h)).status_code == 404
        # both consented: each side sees both contacts
        r = await http.post(f"/matches/{mid}/consent", headers=PEER)
        assert r.status_code == 200 and r.json()["status"] == "connected", r.text
        for h in (ASKER, ASKER_MEMBER, PEER):
            m = (await http.get(f"/matches/{mid}", headers=h)).json()
            assert m["owner_contact"] == owner_contact, m
            assert m["interested_contact"] == {**seeker_contact, "phone": None}
        listed = (await http.get(f"/postings/{pg}/interests", headers=ASKER)).json()["items"]
        assert listed[0]["interested_contact"]["email"] == "sato@seeker.example.jp"
        mine = (await http.get("/me/matches", headers=PEER)).json()["items"]
        assert mine[0]["owner_contact"] == owner_contact
        # still absent for a third party, also in the posting
        assert (await http.get(f"/matches/{mid}", headers=third)).status_code == 404
        assert (await http.get(f"/postings/{pg}", headers=third)).json()["contact"] is None
        assert (await http.post(f"/matches/{mid}/withdraw", headers=PEER)).status_code == 409  # shared already
        # withdrawal before consent: the other side never sees the contact
        mid2 = (await http.post(f"/postings/{pg}/interests", headers=third, json={
            "message": "興味あり", "contact": {"name": "第三", "email": "third@example.jp"}})).json()["match_id"]
        assert (await http.post(f"/matches/{mid2}/consent", headers=third)).status_code == 200
        r = await http.post(f"/matches/{mid2}/withdraw", headers=ASKER)
        assert r.status_code == 200 and r.json()["status"] == "withdrawn"
        assert (await http.post(f"/matches/{mid2}/consent", headers=ASKER)).status_code == 409
        m = (await http.get(f"/matches/{mid2}", headers=ASKER)).json()
        assert m["interested_contact"] is None and m["owner_contact"] is None
        # the owner closes: out of search
        assert (await http.post(f"/postings/{pg}/close", headers=PEER)).status_code == 403
        assert (await http.post(f"/postings/{pg}/close", headers=ASKER)).json()["status"] == "closed"
        assert (await http.get("/postings?kind=successor", headers=PEER)).json()["items"] == []
    # events for interest and consent (no contact in any of them), notices to both sides when connected
    events = await messages(infra, ns, "community.events", "community.MatchConnected")
    assert events[0]["key"] == pg and "sato@" not in json.dumps(events)
    recs = await read_topic(infra.kafka, ns.topic("community.events"), min_count=5, timeout=10)
    assert not any(b"@seeker.example.jp" in r.value or b"@owner.example.jp" in r.value for r in recs)
    notices = await messages(infra, ns, "notifications.commands", "notifications.Notify", 4)
    connected = {(n["payload"]["recipient_kind"], n["payload"]["recipient_id"]) for n in notices
                 if n["payload"]["template"] == "match_connected"}
    assert connected == {("business", "corp-asker"), ("business", "corp-peer")}
    assert any(n["payload"]["template"] == "match_interest" for n in notices)


async def test_R_POR_02_a_reply_reaches_the_askers_inbox_through_notifications(infra, ns, services):
    community = services("community")
    notifications = services("notifications")
    asker = auth("acc-asking-expert", "expert")
    async with httpx.AsyncClient(timeout=15) as http:
        r = await http.post(f"{community.url}/threads", headers=asker, json={
            "category": "it", "title": "クラウド会計の選び方", "body": "小規模事業者に向くものは?"})
        tid = r.json()["thread_id"]
        await http.post(f"{community.url}/threads/{tid}/posts", headers=asker, json={"body": "補足です。"})  # own: no notice
        r = await http.post(f"{community.url}/threads/{tid}/posts", headers=PEER, json={"body": "当社は○○を使っています。"})
        assert r.status_code == 201, r.text

        async def inbox():
            items = (await http.get(f"{notifications.url}/inbox", headers=asker)).json()
            return items if items else None
        items = await eventually(inbox, timeout=40)
        assert [i["template"] for i in items] == ["community_reply"]
        assert "クラウド会計の選び方" in items[0]["subject"] and f"/api/community/threads/{tid}" in items[0]["body"]
