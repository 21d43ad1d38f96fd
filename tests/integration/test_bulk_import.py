"""R-OPS-03 bulk onboarding: businesses with three periods of financials imported from a file through the same events
as single registrations; killed mid-way and resumed with no duplicate and no loss; every refused row reported once
with its reason."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from pymongo import AsyncMongoClient

from identity_service import bulk_import as bi
from tests.support import ROOT, read_topic

ROWS = 6000


def run_import(infra, ns, path, **popen) -> subprocess.Popen:
    env = {**os.environ, "MONGO_URI": infra.mongo, "MONGO_DB": ns.db("identity"), "KAFKA_BOOTSTRAP": infra.kafka,
           "TOPIC_PREFIX": ns.prefix, "TOPIC_PARTITIONS": "3"}
    return subprocess.Popen([sys.executable, "-m", "identity_service.bulk_import", "businesses", str(path),
                             "--operator", "op-import", "--batch", "200"], env=env, cwd=ROOT, **popen)


async def test_R_OPS_03_import_killed_mid_way_resumes_with_no_duplicate_no_loss_and_reports_refusals(infra, ns, tmp_path):
    subprocess.run([sys.executable, "bench/dataset.py", "--businesses", str(ROWS), "--experts", "0", "--bad-every", "250",
                    "--seed", "5", "--out", str(tmp_path)], cwd=ROOT, check=True)
    path = tmp_path / "businesses.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(100, "{not json")  # an unreadable line
    lines.append(lines[10])  # the same business twice in the file
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # what the import must end with, by the route's own rules
    expected, bad = set(), set()
    for n, row in bi.rows(path):
        data, why = bi.check(row, 2026)
        (bad.add(n) if why else expected.add(bi.business_id(row)))
    assert len(bad) >= ROWS // 250 and len(expected) > ROWS * 0.9

    # killed once mid-way ...
    first = run_import(infra, ns, path, stderr=subprocess.DEVNULL)
    progress = tmp_path / "businesses.jsonl.progress"
    deadline = time.time() + 120
    while time.time() < deadline:
        if progress.exists() and 1000 < json.loads(progress.read_text())["line"] < ROWS - 1000:
            break
        assert first.poll() is None, "the import finished before it could be killed; give it more rows"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = json.loads(progress.read_text())["line"]
    # ... and resumed from its progress file
    second = run_import(infra, ns, path, stderr=subprocess.PIPE, text=True)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-2000:]
    assert "imported" in err and "rejected" in err

    client = AsyncMongoClient(infra.mongo)
    try:
        db = client[ns.db("identity")]
        ids = [d["_id"] async for d in db.businesses.find({}, {"_id": 1})]
        assert len(ids) == len(set(ids)) == len(expected), (len(ids), len(expected), killed_at)
        assert set(ids) == expected
        one = await db.businesses.find_one({"_id": sorted(expected)[0]})
        assert len(one["financials"]) == 3 and one["prime_id"] is None and one["status"] == "active"
        assert await db.audit.count_documents({}) == 2 * len(expected)
    finally:
        await client.close()
    # the same events as a registration, each business's pair at least once (a redone batch republishes the same ids)
    recs = await read_topic(infra.kafka, ns.topic("identity.events"), min_count=2 * len(expected), timeout=60)
    kinds: dict[str, set[str]] = {}
    for r in recs:
        env = json.loads(r.value)
        kinds.setdefault(env["event_type"], set()).add(env["payload"]["business_id"])
    assert kinds["identity.BusinessRegistered"] == kinds["identity.BusinessProfileChanged"] == expected
    # every refused row once, with its reason
    rejected = [json.loads(x) for x in (tmp_path / "businesses.jsonl.rejected.jsonl").read_text().splitlines()]
    assert Counter(r["line"] for r in rejected) == Counter(bad)
    assert all(r["reason"] for r in rejected)
    assert any(r["reason"].startswith("not JSON") for r in rejected)


async def test_R_OPS_03_experts_imported_through_the_registration_event_once(infra, ns, tmp_path):
    subprocess.run([sys.executable, "bench/dataset.py", "--businesses", "0", "--experts", "300", "--seed", "6",
                    "--out", str(tmp_path)], cwd=ROOT, check=True)
    path = tmp_path / "experts.jsonl"
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"external_id": "x", "account_id": "acc-x", "name": "占い師", "fields": ["astrology"]}) + "\n")
    env = {**os.environ, "MONGO_URI": infra.mongo, "MONGO_DB": ns.db("experts"), "KAFKA_BOOTSTRAP": infra.kafka,
           "TOPIC_PREFIX": ns.prefix, "TOPIC_PARTITIONS": "3"}
    for _ in range(2):  # the second run finds everything there and publishes nothing new
        done = subprocess.run([sys.executable, "-m", "experts_service.bulk_import", "experts", str(path), "--operator",
                               "op-import", "--batch", "100"], env=env, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    assert "imported 300 experts" in done.stderr and "Unknown field" in done.stderr
    client = AsyncMongoClient(infra.mongo)
    try:
        assert await client[ns.db("experts")].experts.count_documents({}) == 300
    finally:
        await client.close()
    recs = await read_topic(infra.kafka, ns.topic("experts.events"), min_count=300, timeout=30)
    changes = [json.loads(r.value) for r in recs]
    assert len({c["event_id"] for c in changes}) == 300
    assert {c["payload"]["change"] for c in changes} == {"registered"}
