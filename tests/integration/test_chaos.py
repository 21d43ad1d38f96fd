"""Fault injection (issue 15, item 7): while a mixed load runs — dispatch requests over HTTP (→ ReserveBudget →
answer), reservations sent straight to the budget service, completed dispatches that owe ratings, Notify commands —
the suite kills services (SIGKILL), restarts the broker, stops the database, and puts Toxiproxy between a service and
its database to add latency and to cut the connections. Afterwards:

- no lost command: every ReserveBudget has exactly one answer, every completed dispatch owes its rating, every
  Notify is in the inbox with its e-mail delivery;
- no double effect: one answer kind per dispatch, one ledger entry per reservation, the frame's balances equal the
  ledger's sum (`/check`), one owed rating and one inbox item each;
- every dispatch is in a terminal or visible state (`approved`, `refused`, `budget_unanswered`), and an approved
  one holds its reservation;
- nothing is dead-lettered (every message is valid; an outage is no reason to give up on one).

Per fault it prints the time from the dependency's return to the first end-to-end probe that passes (readiness of
every service and a command's round trip through the budget service), and the messages retried and dead-lettered
meanwhile (from the services' `/metrics`).

`CHAOS_PROFILE=short` (the default, in the suite: ~3 min, the database stopped 8 s) or `long` (`make chaos`: the
database stopped 30 s, ten times the load, longer latency and cuts).

Toxiproxy sits only between services and MongoDB: Kafka's clients reconnect to the broker's advertised address
after the first metadata call, so a proxy in front of the bootstrap address would not stay in the path; the broker
is restarted instead.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts import Envelope
from contracts.events.budget import ReserveBudget
from contracts.events.dispatch import DispatchCompleted
from contracts.events.notifications import Notify
from tests.integration.saga_world import (EXPERT, FEE_PER_DISPATCH, FRAME, FY, INSTITUTION, SagaWorld, bureau,
                                          request_body, staff)
from tests.support import LOCAL, ServiceProcess, eventually, free_port, local_env

PROFILES = {
    "short": dict(db_stop=8, latency=4, cut=4, dispatches=10, reservations=60, ratings=20, notices=20, fits=45),
    "long": dict(db_stop=30, latency=20, cut=15, dispatches=60, reservations=600, ratings=200, notices=200, fits=400),
}
PROFILE = os.environ.get("CHAOS_PROFILE", "short")
P = PROFILES[PROFILE]
SETTLED = {"approved", "refused", "budget_unanswered"}
MAIL_TO = "chaos@example.jp"


def scripts_env(infra) -> dict:
    """The environment in which deploy/local's scripts control the test's own broker and database."""
    if infra.how == "local scripts":
        return local_env()
    env = dict(os.environ)
    kafka_ok = infra.kafka.endswith(f":{env.get('KAFKA_PORT', '9092')}")
    mongo_ok = infra.mongo.rstrip("/").endswith(f":{env.get('MONGO_PORT', '27017')}")
    if infra.how == "environment" and kafka_ok and mongo_ok and env.get("VAR_DIR"):
        return env
    pytest.skip("the fault-injection suite restarts the broker and the database: it needs the project's scripts' "
                "servers (or KAFKA_PORT, MONGO_PORT and VAR_DIR naming the ones in KAFKA_BOOTSTRAP / MONGO_URI)")


def script(env: dict, name: str, *args: str) -> None:
    subprocess.run([LOCAL / name, *args], env=env, check=True, capture_output=True, timeout=120)


class Toxiproxy:
    """Toxiproxy (deploy/local/toxiproxy.sh) and its HTTP API."""

    def __init__(self, env: dict):
        self.port = int(env.get("TOXIPROXY_PORT") or free_port())
        self.env = {**env, "TOXIPROXY_PORT": str(self.port)}
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def start(self) -> "Toxiproxy":
        script(self.env, "toxiproxy.sh", "start")
        self.api.post("/reset")
        return self

    def stop(self) -> None:
        for p in self.api.get("/proxies").json():
            self.api.delete(f"/proxies/{p}")
        self.api.close()
        script(self.env, "toxiproxy.sh", "stop")

    def proxy(self, name: str, upstream: str) -> str:
        """A proxy to `upstream` (host:port); returns the address to use instead."""
        listen = f"127.0.0.1:{free_port()}"
        r = self.api.post("/proxies", json={"name": name, "listen": listen, "upstream": upstream, "enabled": True})
        assert r.status_code == 201, r.text
        return listen

    def latency(self, name: str, ms: int) -> None:
        r = self.api.post(f"/proxies/{name}/toxics", json={"name": "latency", "type": "latency", "stream": "downstream",
                                                            "attributes": {"latency": ms, "jitter": ms // 5}})
        assert r.status_code == 200, r.text

    def heal(self, name: str) -> None:
        self.api.delete(f"/proxies/{name}/toxics/latency")

    def enabled(self, name: str, on: bool) -> None:
        """Off: every open connection is cut and new ones are refused."""
        assert self.api.post(f"/proxies/{name}", json={"enabled": on}).status_code == 200


class Publisher:
    """Publishes as the other services would; sends again (same envelope) while the broker is away."""

    def __init__(self, kafka: str, ns):
        self.ns = ns
        self.producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=True, acks="all",
                                         request_timeout_ms=10000)

    async def send(self, msg, producer: str, copies: int = 1) -> None:
        env = Envelope.wrap(msg, producer=producer)
        for _ in range(copies):
            for attempt in range(60):
                try:
                    await self.producer.send_and_wait(self.ns.topic(msg.topic), env.model_dump_json().encode(),
                                                      key=msg.key().encode())
                    break
                except Exception:
                    if attempt == 59:
                        raise
                    await asyncio.sleep(1)


class Follower:
    """Reads a topic from the start for the whole run (reconnecting across a broker restart)."""

    def __init__(self, kafka: str, topic: str):
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest",
                                         enable_auto_commit=False, group_id=None)
        self.envelopes: list[dict] = []

    async def start(self) -> "Follower":
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            try:
                for recs in (await self.consumer.getmany(timeout_ms=300)).values():
                    self.envelopes.extend(json.loads(r.value) for r in recs)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)

    def answers(self) -> dict[str, set[str]]:
        """Budget answer kinds per dispatch id."""
        out: dict[str, set[str]] = {}
        for e in self.envelopes:
            if e["event_type"] in ("budget.BudgetReserved", "budget.BudgetRefused"):
                out.setdefault(e["payload"]["dispatch_id"], set()).add(e["event_type"].split(".")[-1])
        return out

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


@dataclass
class Outcome:
    fault: str
    lasted: float
    recovered_after: float
    retried: int
    dead_letters: int


@dataclass
class Load:
    dispatch_http: dict[str, int] = field(default_factory=dict)  # outcome -> count
    reservations: list[str] = field(default_factory=list)        # dispatch ids of direct commands
    ratings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def counters(svcs: dict[str, ServiceProcess]) -> dict[str, tuple[int, int, int]]:
    """Per service: (pid, messages retried, dead letters) as its /metrics says; a service that does not answer has
    none."""
    out = {}
    for name, p in svcs.items():
        try:
            text = httpx.get(f"{p.url}/metrics", timeout=3).text
        except httpx.HTTPError:
            continue
        out[name] = (p.proc.pid, _total(text, "smeportal_messages_retried_total"),
                     _total(text, "smeportal_dead_letters_total"))
    return out


def _total(text: str, name: str) -> int:
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")))


def delta(before: dict, after: dict, i: int) -> int:
    """What the counters grew by; a restarted process started again from zero."""
    total = 0
    for name, now in after.items():
        was = before.get(name)
        total += now[i] - was[i] if was and was[0] == now[0] else now[i]
    return total


@pytest.mark.timeout(1800 if PROFILE == "long" else 420)
async def test_chaos_faults_under_mixed_load_lose_nothing_double_nothing_and_leave_every_dispatch_visible(
        infra, ns, tmp_path, smtp):
    env = scripts_env(infra)
    sink, smtp_port = smtp
    toxi = Toxiproxy(env).start()
    mongo_upstream = infra.mongo.rstrip("/").rsplit("/", 1)[-1]
    svcs: dict[str, ServiceProcess] = {}
    common = {"OUTBOX_POLL_SECONDS": "0.2", "METRICS_REFRESH_SECONDS": "1", "LOG_LEVEL": "WARNING"}
    started = time.monotonic()
    try:
        via = {name: toxi.proxy(f"{name}-mongo", mongo_upstream) for name in ("budget", "dispatch")}
        svcs["budget"] = ServiceProcess("budget", infra, ns, tmp_path, MONGO_URI=f"mongodb://{via['budget']}", **common)
        svcs["dispatch"] = ServiceProcess("dispatch", infra, ns, tmp_path, MONGO_URI=f"mongodb://{via['dispatch']}",
                                          DISPATCH_BUDGET_ANSWER_SECONDS="5", **common)
        svcs["ratings"] = ServiceProcess("ratings", infra, ns, tmp_path, **common)
        svcs["notifications"] = ServiceProcess("notifications", infra, ns, tmp_path, SMTP_HOST="127.0.0.1",
                                               SMTP_PORT=str(smtp_port), **common)
        for p in svcs.values():
            p.start(timeout=120)

        async with SagaWorld(infra, ns) as world:
            await world.platform(svcs["budget"].url, dispatches_fit=P["fits"])
            await world.expert()
            businesses = [f"biz-c{i}" for i in range(P["dispatches"])]
            await world.bind(*businesses)
            pub = Publisher(infra.kafka, ns)
            await pub.producer.start()
            answers = await Follower(infra.kafka, ns.topic("budget.events")).start()
            load = Load()
            print(f"\nchaos ({PROFILE}): set up in {time.monotonic() - started:.0f} s")

            async def probe() -> str | None:
                """Every service ready, and a command's round trip through the budget service (a frame that does not
                exist: refused, no ledger effect). None when it passed, else what did not."""
                for p in svcs.values():
                    try:
                        r = httpx.get(f"{p.url}/readyz", timeout=3)
                    except httpx.HTTPError as e:
                        return f"{p.name} /readyz: {type(e).__name__}"
                    if r.status_code != 200:
                        return f"{p.name} /readyz {r.status_code}: {r.text[:300]}"
                pid = "probe-" + uuid.uuid4().hex[:8]
                await pub.send(ReserveBudget(command_id=pid, frame_id="frame-probe", dispatch_id=pid,
                                             member_id=INSTITUTION, fee=1, travel=0), "dispatch")
                for _ in range(100):
                    if pid in answers.answers():
                        return None
                    await asyncio.sleep(0.1)
                return f"no budget answer to {pid} in 10 s ({len(answers.envelopes)} budget events read so far)"

            async def fault(name: str, inject, restore, lasting: float, load_slice) -> Outcome:
                before = counters(svcs)
                t0 = time.monotonic()
                await inject()
                sending = asyncio.create_task(load_slice)  # the load meets the fault
                await asyncio.sleep(lasting)
                await restore()
                t1 = time.monotonic()
                while (why := await probe()) is not None:
                    assert time.monotonic() - t1 < 180, \
                        f"not recovered 180 s after {name}: {why}\n{_log_tails(svcs, env)}"
                t2 = time.monotonic()
                await sending
                after = counters(svcs)
                o = Outcome(name, t1 - t0, t2 - t1, delta(before, after, 1), delta(before, after, 2))
                print(f"  {o.fault:<44} lasted {o.lasted:5.1f} s   recovered {o.recovered_after:5.1f} s after   "
                      f"retried {o.retried:4d}   dead-lettered {o.dead_letters}")
                return o

            def sync(f, *a):
                async def run():
                    await asyncio.to_thread(f, *a)
                return run

            async def nothing():
                return None

            def kill_and_restart(name: str):
                async def inject():
                    svcs[name].proc.kill()
                    svcs[name].proc.wait()

                async def restore():
                    await asyncio.to_thread(svcs[name].start, 120)
                return inject, restore

            faults = [
                ("SIGKILL budget, restart", *kill_and_restart("budget"), 0),
                ("broker restart", sync(script, env, "kafka.sh", "stop"), sync(script, env, "kafka.sh", "start"), 0),
                (f"database stopped {P['db_stop']} s", sync(script, env, "mongo.sh", "stop"),
                 sync(script, env, "mongo.sh", "start"), P["db_stop"]),
                (f"dispatch->db latency 500 ms for {P['latency']} s", sync(toxi.latency, "dispatch-mongo", 500),
                 sync(toxi.heal, "dispatch-mongo"), P["latency"]),
                (f"budget->db connections cut for {P['cut']} s", sync(toxi.enabled, "budget-mongo", False),
                 sync(toxi.enabled, "budget-mongo", True), P["cut"]),
                ("SIGKILL dispatch, restart", *kill_and_restart("dispatch"), 0),
                ("SIGKILL ratings + notifications, restart",
                 *_both(kill_and_restart("ratings"), kill_and_restart("notifications")), 0),
            ]

            slices = len(faults) + 1  # one slice of the load before the faults, one sent during each fault
            http = httpx.AsyncClient(base_url=svcs["dispatch"].url, timeout=15)

            async def send_slice(k: int) -> None:
                """Slice `k` of the mixed load; the requests go out concurrently, so they meet the fault."""
                async def dispatch_request(b: str) -> None:
                    try:
                        outcome = str((await http.post("/requests", json=request_body(b), headers=staff(b))).status_code)
                    except httpx.HTTPError as e:
                        outcome = type(e).__name__
                    load.dispatch_http[outcome] = load.dispatch_http.get(outcome, 0) + 1

                async def messages() -> None:
                    for i in range(k, P["reservations"], slices):
                        did = f"direct-{i}"
                        load.reservations.append(did)
                        await pub.send(ReserveBudget(command_id=f"cmd-{did}", frame_id=FRAME, dispatch_id=did,
                                                     member_id=INSTITUTION, fee=FEE_PER_DISPATCH - 1000, travel=1000),
                                       "dispatch", copies=1 + (i % 5 == 0))
                    for i in range(k, P["ratings"], slices):
                        did = f"rated-{i}"
                        load.ratings.append(did)
                        await pub.send(DispatchCompleted(dispatch_id=did, fiscal_year=FY, route="B",
                                                         business_id=f"biz-{did}", business_account_id=f"acc-{did}",
                                                         expert_id=EXPERT, completed_at=datetime.now(UTC)),
                                       "dispatch", copies=1 + (i % 4 == 0))
                    for i in range(k, P["notices"], slices):
                        nid = f"notice-{i}"
                        load.notices.append(nid)
                        await pub.send(Notify(notification_id=nid, recipient_id=f"acc-n{i}", template="chaos",
                                              params={"email": MAIL_TO, "subject": f"Notice {i}", "message": "x"}),
                                       "recommend", copies=1 + (i % 3 == 0))

                await asyncio.gather(messages(), *(dispatch_request(b) for b in businesses[k::slices]))

            await send_slice(0)
            outcomes = []
            for k, (name, inject, restore, lasting) in enumerate(faults, start=1):
                outcomes.append(await fault(name, inject, restore, lasting, send_slice(k)))
            await http.aclose()

            # --- settle: everything sent is eventually answered and applied
            async def settle(check, what: str, timeout: float) -> None:
                try:
                    await eventually(check, timeout=timeout, interval=1)
                except AssertionError:
                    dead = await _dead_letters(infra.kafka, ns.prefix)
                    raise AssertionError(f"not settled within {timeout} s: {what}; dead letters: {dead}; "
                                         f"faults: {outcomes}") from None

            sent_reservations = set(load.reservations)
            dispatch_db, budget_db = world.db("dispatch"), world.db("budget")

            async def all_answered():
                got = answers.answers()
                ids = {d["_id"] async for d in dispatch_db.dispatches.find({"reserve": {"$exists": True}}, {"_id": 1})}
                return (sent_reservations | ids) <= got.keys()
            await settle(all_answered, "every ReserveBudget answered", 240)

            async def all_settled():
                return await dispatch_db.dispatches.count_documents({"status": {"$nin": sorted(SETTLED)}}) == 0
            await settle(all_settled, "every dispatch approved, refused or budget_unanswered", 120)

            ratings_db, notices_db = world.db("ratings"), world.db("notifications")

            async def ratings_owed():
                return await ratings_db.owed.count_documents({"dispatch_id": {"$in": load.ratings}}) >= len(load.ratings)
            await settle(ratings_owed, "every completed dispatch owes its rating", 120)

            async def notices_delivered():
                keys = [f"inbox:notify:{n}" for n in load.notices]
                return await notices_db.deliveries.count_documents({"_id": {"$in": keys}, "status": "sent"}) == len(keys)
            await settle(notices_delivered, "every Notify in the inbox and e-mailed", 120)
            await asyncio.sleep(2)  # late duplicates, if any, would land now

            # --- no lost command, no double effect
            got = answers.answers()
            dispatches = [d async for d in dispatch_db.dispatches.find({}, {"status": 1, "reserve": 1})]
            doubled = {k: v for k, v in got.items() if len(v) > 1}
            assert not doubled, f"a command answered both ways: {doubled}"
            reserved = {k for k, v in got.items() if v == {"BudgetReserved"} and not k.startswith("probe-")}
            async with httpx.AsyncClient(base_url=svcs["budget"].url, timeout=20) as http:
                frame = (await http.get(f"/frames/{FRAME}", headers=bureau())).json()
                check = (await http.get(f"/frames/{FRAME}/check", headers=bureau())).json()
            assert check["consistent"] and check["violations"] == [], check
            assert frame["reserved"] == FEE_PER_DISPATCH * len(reserved), (frame["reserved"], len(reserved))
            assert check["ledger_entries"] == 2 + len(reserved)
            assert len(reserved) <= P["fits"]
            assert {d["status"] for d in dispatches} <= SETTLED
            for d in dispatches:  # dispatch and budget agree
                if d["status"] == "approved":
                    assert got.get(d["_id"]) == {"BudgetReserved"}, d
            owed = [o async for o in ratings_db.owed.find({"dispatch_id": {"$in": load.ratings}}, {"dispatch_id": 1})]
            assert sorted(o["dispatch_id"] for o in owed) == sorted(load.ratings)  # one each (business rater, route B)
            inbox = await notices_db.inbox.count_documents({"_id": {"$in": [f"notify:{n}" for n in load.notices]}})
            assert inbox == len(load.notices)
            assert len(sink.to(MAIL_TO)) >= len(load.notices)

            # --- nothing dead-lettered
            dead = await _dead_letters(infra.kafka, ns.prefix)
            print(f"chaos ({PROFILE}) load: dispatch requests {load.dispatch_http} ({len(dispatches)} stored: "
                  f"{dict(_count(d['status'] for d in dispatches))}), reservations {len(load.reservations)} "
                  f"({len(reserved)} reserved in all), ratings {len(load.ratings)}, notices {len(load.notices)}; "
                  f"dead letters {dead}; total {time.monotonic() - started:.0f} s")
            assert sum(dead.values()) == 0, f"dead-lettered: {dead}"
            assert sum(o.dead_letters for o in outcomes) == 0

            await answers.stop()
            await pub.producer.stop()
    finally:
        for p in svcs.values():
            p.stop()
        toxi.stop()
        # leave the broker and the database running, as the rest of the session expects
        script(env, "kafka.sh", "start")
        script(env, "mongo.sh", "start")


def _log_tails(svcs: dict[str, ServiceProcess], env: dict, lines: int = 12) -> str:
    """The last lines of each service's log (warnings and errors: the services run at LOG_LEVEL=WARNING) and of the
    broker's and the database's, for a run that did not recover."""
    files = {name: p.log_file for name, p in svcs.items()}
    files |= {name: Path(env["VAR_DIR"]) / "log" / f"{name}.log" for name in ("mongo", "kafka")}
    out = []
    for name, f in files.items():
        tail = f.read_text(errors="replace").splitlines()[-lines:] if f.exists() else ["(no log)"]
        p = svcs.get(name)
        state = f" (pid {p.proc.pid}, exit code {p.proc.poll()})" if p and p.proc else ""
        out.append(f"--- {name}{state}\n" + "\n".join(line[:400] for line in tail))
    return "\n".join(out)


def _both(a, b):
    async def inject():
        await asyncio.gather(a[0](), b[0]())

    async def restore():
        await asyncio.gather(a[1](), b[1]())
    return inject, restore


def _count(items) -> dict:
    out: dict = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


async def _dead_letters(kafka: str, prefix: str) -> dict[str, int]:
    """Records in each of the test's dead-letter topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix) and t.endswith(".dlq")]
    finally:
        await admin.close()
    if not topics:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        from aiokafka import TopicPartition
        parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or
                                                                 await _partitions(consumer, t))]
        ends = await consumer.end_offsets(parts)
        begins = await consumer.beginning_offsets(parts)
        out: dict[str, int] = {}
        for tp in parts:
            out[tp.topic.removeprefix(prefix)] = out.get(tp.topic.removeprefix(prefix), 0) + ends[tp] - begins[tp]
        return {k: v for k, v in out.items() if v}
    finally:
        await consumer.stop()


async def _partitions(consumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or {0}
