"""Benchmark of the gateway's deny list (R-ID-09): a revocation published on identity.events → the gateway itself
answers 401 for that token, next to the gateway's plain answer time for the same request measured in the same run.

    uv run --frozen python bench/gateway_deny.py            # 50 revocations of each kind (token, client, account)
    uv run --frozen python bench/gateway_deny.py --n 200

Starts its own gateway (deploy/local/gateway.sh: HAProxy and the deny-list sync, on the tests' ports and var/test,
stopping one the tests left running there)
against KAFKA_BOOTSTRAP (default 127.0.0.1:19092), in its own topic prefix, and stops it at the end. The events are
published as identity would publish them (acks=all); identity's own part (its outbox relay) is not included: the
integration test tests/integration/test_gateway_deny.py measures the whole path from identity's /revoke.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from contracts import Envelope  # noqa: E402
from contracts.events.identity import AccountRevoked, ClientRevoked, TokenRevoked  # noqa: E402
from tests.support import GATEWAY_PORT, LOCAL, Infra, Namespace, gateway_env, token  # noqa: E402

KAFKA = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def revocation(kind: str, jti: str, sub: str, client_id: str):
    if kind == "token":
        return TokenRevoked(jti=jti, expires_at=int(time.time()) + 120, reason="bench")
    if kind == "client":
        return ClientRevoked(client_id=client_id, reason="bench")
    return AccountRevoked(account_id=sub, reason="bench")


async def drop_topics(ns: Namespace) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        if mine := [t for t in await admin.list_topics() if t.startswith(ns.prefix)]:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def main(n: int) -> None:
    ns = Namespace()
    infra = Infra(KAFKA, "", "environment")
    env = gateway_env(infra, ns)
    subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)
    subprocess.run([LOCAL / "gateway.sh", "start"], env=env, check=True)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    url = f"http://127.0.0.1:{GATEWAY_PORT}/api/nowhere"  # answered by the gateway itself: 404, or 401 once revoked
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            plain = []
            for _ in range(200):
                access = token(sub=f"acc-{uuid.uuid4().hex}", jti=uuid.uuid4().hex, client_id=f"cl-{uuid.uuid4().hex}")
                start = time.perf_counter()
                assert (await http.get(url, headers={"authorization": f"Bearer {access}"})).status_code == 404
                plain.append(time.perf_counter() - start)
            results: dict[str, list[float]] = {}
            for kind in ("token", "client", "account"):
                results[kind] = []
                for _ in range(n):
                    jti, sub, cid = uuid.uuid4().hex, f"acc-{uuid.uuid4().hex}", f"cl-{uuid.uuid4().hex}"
                    h = {"authorization": f"Bearer {token(sub=sub, jti=jti, client_id=cid)}"}
                    msg = revocation(kind, jti, sub, cid)
                    start = time.perf_counter()
                    await producer.send_and_wait(ns.topic("identity.events"), key=msg.key().encode(),
                                                 value=Envelope.wrap(msg, producer="identity").model_dump_json().encode())
                    while (await http.get(url, headers=h)).status_code != 401:
                        if time.perf_counter() - start > 10:
                            raise TimeoutError(f"{kind} not refused within 10 s")
                        await asyncio.sleep(0.002)
                    results[kind].append(time.perf_counter() - start)
    finally:
        await producer.stop()
        subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)
        await drop_topics(ns)
    ms = lambda v: f"{v * 1000:.1f} ms"  # noqa: E731
    print(f"\nthe gateway's own 404 for such a request (baseline, 200): p50 {ms(statistics.median(plain))}, p99 {ms(pct(plain, 99))}")
    for kind, values in results.items():
        print(f"{kind:8} revoked → gateway 401 ({len(values)}): p50 {ms(statistics.median(values))}, "
              f"p99 {ms(pct(values, 99))}, max {ms(max(values))}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="revocations of each kind")
    asyncio.run(main(ap.parse_args().n))
