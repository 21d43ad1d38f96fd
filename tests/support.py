"""Test helpers: infrastructure endpoints, service processes, tokens, Kafka reads."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import httpx
import jwt

from servicekit import registry

ROOT = Path(__file__).resolve().parents[1]
TEST_VAR = ROOT / "var" / "test"
LOCAL = ROOT / "deploy" / "local"
SERVICES = registry.names()  # services/registry.toml, in port order
# Under pytest-xdist (`make test` runs the suite on several workers) each worker has its own gateway, service ports
# and gateway state directory: worker gwN shifts the ports by 300 * N and keeps the gateway's config, pids, logs and
# deny list under var/test/workers/gwN (the signing keys stay shared).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_SHIFT = 300 * int(WORKER[2:]) if WORKER.startswith("gw") and WORKER[2:].isdigit() else 0
GATEWAY_PORT = int(os.environ.get("TEST_GATEWAY_PORT", "18080")) + _SHIFT
SERVICE_PORT_BASE = int(os.environ.get("TEST_SERVICE_PORT_BASE", "18100")) + _SHIFT
GATEWAY_VAR = TEST_VAR / "workers" / WORKER if WORKER else TEST_VAR
# The issuer of every token in the tests: identity issues as the gateway's address, services accept only it
TEST_ISSUER = f"http://127.0.0.1:{GATEWAY_PORT}"


@dataclass
class Infra:
    kafka: str
    mongo: str
    how: str
    stop: list = field(default_factory=list)


def local_env() -> dict:
    return {**os.environ, "VAR_DIR": str(TEST_VAR), "CACHE_DIR": str(ROOT / "var" / "cache"),
            "KAFKA_PORT": "19092", "KAFKA_CONTROLLER_PORT": "19093", "MONGO_PORT": "37017",
            "GATEWAY_PORT": str(GATEWAY_PORT), "SERVICE_PORT_BASE": str(SERVICE_PORT_BASE)}


def worker_env() -> dict:
    """local_env for what runs once per test worker (the gateway, the portal's web server): the worker's ports and
    its own state directory, which shares the test signing keys."""
    if WORKER:
        GATEWAY_VAR.mkdir(parents=True, exist_ok=True)
        keys = GATEWAY_VAR / "keys"
        if not keys.exists():
            keys.symlink_to(TEST_VAR / "keys")
    return {**local_env(), "VAR_DIR": str(GATEWAY_VAR)}


def gateway_env(infra: "Infra", ns: "Namespace | None" = None, **extra) -> dict:
    """What deploy/local/gateway.sh needs in a test: its ports, and for the deny-list sync next to HAProxy the test's
    Kafka and topic prefix (the sync reads `<prefix>identity.events`)."""
    return {**worker_env(), "KAFKA_BOOTSTRAP": infra.kafka, "TOPIC_PREFIX": ns.prefix if ns else "",
            "TOPIC_PARTITIONS": os.environ.get("TEST_TOPIC_PARTITIONS", "3"), **extra}


def docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def start_infra() -> Infra:
    """Env vars -> testcontainers (a Docker engine answers) -> the project's local scripts."""
    if os.environ.get("KAFKA_BOOTSTRAP") and os.environ.get("MONGO_URI"):
        return Infra(os.environ["KAFKA_BOOTSTRAP"], os.environ["MONGO_URI"], "environment")
    if docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        kafka = KafkaContainer("apache/kafka:4.1.0").with_kraft()
        mongo = MongoDbContainer("mongo:7")
        kafka.start()
        mongo.start()
        return Infra(kafka.get_bootstrap_server(), mongo.get_connection_url(), "testcontainers",
                     [kafka.stop, mongo.stop])
    env = local_env()
    stops = []
    for script in ("kafka.sh", "mongo.sh"):
        was_up = subprocess.run([LOCAL / script, "status"], env=env, capture_output=True).returncode == 0
        subprocess.run([LOCAL / script, "start"], env=env, check=True)
        if not was_up:
            stops.append(lambda s=script: subprocess.run([LOCAL / s, "stop"], env=env))
    subprocess.run([LOCAL / "gateway.sh", "keys"], env=env, check=True)
    return Infra("127.0.0.1:19092", "mongodb://127.0.0.1:37017", "local scripts", stops)


def apidocs_env(mp) -> None:
    """Lets `servicekit.apidocs` build the documents inside a test process (`mp`: a pytest MonkeyPatch):
    it clears the infrastructure variables itself, so they are removed here to be restored afterwards, and
    identity loads a signing key when imported."""
    for var in ("KAFKA_BOOTSTRAP", "MONGO_URI", "MONGO_DB", "TOPIC_PREFIX", "TOPIC_PARTITIONS"):
        mp.delenv(var, raising=False)
    mp.setenv("JWT_PRIVATE_KEY_FILE", str(TEST_VAR / "keys" / "jwt-private.pem"))


def service_port(name: str) -> int:
    """The port the gateway expects `name` on in tests (its routes are rendered from these)."""
    return registry.get(name).local_port(SERVICE_PORT_BASE)


class MailSink:
    """An SMTP server's handler (aiosmtpd) that keeps every message it accepts."""

    def __init__(self):
        import threading

        self.messages: list = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        import email
        from email import policy

        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


_SHARED_MAIL: "tuple[MailSink, int] | None" = None


def shared_mailbox() -> "tuple[MailSink, int]":
    """One real SMTP server (aiosmtpd on loopback) for the whole test process, started on first use: the identity
    processes the helpers start send their account mails (R-ID-10) to it, and the helpers read them from here."""
    global _SHARED_MAIL
    if _SHARED_MAIL is None:
        import atexit

        from aiosmtpd.controller import Controller

        sink, port = MailSink(), free_port()
        ctl = Controller(sink, hostname="127.0.0.1", port=port)
        ctl.start()
        atexit.register(ctl.stop)
        _SHARED_MAIL = (sink, port)
    return _SHARED_MAIL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_key() -> str:
    return (TEST_VAR / "keys" / "jwt-private.pem").read_text()


def public_key_file() -> str:
    return str(TEST_VAR / "keys" / "jwt-public.pem")


def token(sub: str = "user-1", roles=("operator",), scope: str = "portal", ttl: int = 7200, key: str | None = None,
          aud: str = "smeportal", alg: str = "RS256", **claims) -> str:
    now = int(time.time())
    body = {"sub": sub, "roles": list(roles), "scope": scope, "aud": aud, "iss": TEST_ISSUER,
            "iat": now, "exp": now + ttl, **claims}
    key = key or private_key()
    return jwt.encode(body, _parsed(key) if isinstance(key, str) and "PRIVATE KEY" in key else key, algorithm=alg)


@lru_cache(maxsize=16)
def _parsed(pem: str):
    """A PEM private key parsed once: PyJWT parses a PEM string on every call, and the RSA key's checks made each token
    cost ~47 ms here (0.4 ms signing with the parsed key)."""
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem.encode(), password=None)


@dataclass
class Namespace:
    """What isolates one test: its topic prefix and database names."""

    id: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:10])

    @property
    def prefix(self) -> str:
        return f"{self.id}."

    def db(self, service: str) -> str:
        return f"{self.id}_{service}"

    def topic(self, logical: str) -> str:
        return self.prefix + logical

    async def drop(self, infra: "Infra") -> None:
        """Deletes this test's topics and databases, so one broker stays light over a long session."""
        from aiokafka.admin import AIOKafkaAdminClient
        from pymongo import AsyncMongoClient

        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(self.prefix)]
            if mine:
                await admin.delete_topics(mine, timeout_ms=30000)
        finally:
            await admin.close()
        client = AsyncMongoClient(infra.mongo)
        try:
            for name in await client.list_database_names():
                if name.startswith(f"{self.id}_"):
                    await client.drop_database(name)
        finally:
            await client.close()


class ServiceProcess:
    """A service running as its own OS process, exactly as deployed (uvicorn + env)."""

    def __init__(self, name: str, infra: Infra, ns: Namespace, tmp: Path, port: int | None = None,
                 args: tuple[str, ...] = (), **env):
        self.name, self.port, self.args = name, port or free_port(), tuple(args)  # args: more uvicorn options
        self.spans_file = tmp / f"spans-{name}.jsonl"
        self.log_file = tmp / f"{name}.log"
        self.env = {**os.environ, "SERVICE_NAME": name, "KAFKA_BOOTSTRAP": infra.kafka, "MONGO_URI": infra.mongo,
                    "MONGO_DB": ns.db(name), "TOPIC_PREFIX": ns.prefix, "JWT_PUBLIC_KEY_FILE": public_key_file(),
                    "JWT_PRIVATE_KEY_FILE": str(TEST_VAR / "keys" / "jwt-private.pem"),
                    "OTEL_SPANS_FILE": str(self.spans_file), "OIDC_ISSUER": TEST_ISSUER, "OUTBOX_POLL_SECONDS": "0.2",
                    "TOPIC_PARTITIONS": os.environ.get("TEST_TOPIC_PARTITIONS", "3"), **env}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> "ServiceProcess":
        uvicorn = str(Path(sys.executable).parent / "uvicorn")
        # keep-alive well above a loaded machine's pauses: a client reusing a connection the server has just closed
        # would read nothing (httpx.ReadError)
        self.proc = subprocess.Popen([uvicorn, *registry.get(self.name).uvicorn_args, "--host", "127.0.0.1",
                                      "--port", str(self.port), "--no-access-log",
                                      "--timeout-keep-alive", "30", *self.args],
                                     env=self.env, stdout=open(self.log_file, "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_file.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready: {self.log_file.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def spans(self) -> list[dict]:
        if not self.spans_file.exists():
            return []
        return [json.loads(line) for line in self.spans_file.read_text().splitlines() if line.strip()]


async def read_topic(bootstrap: str, topic: str, *, min_count: int = 1, timeout: float = 20) -> list:
    """All records of `topic` from the beginning, waiting until at least `min_count` arrived."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < min_count and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def eventually(check, timeout: float = 20, interval: float = 0.2):
    """Polls an async `check` until it returns something truthy; returns that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


class FakeBroker:
    """Stands in for FastStream's KafkaBroker in a consumer's unit test: records the subscriber's options and what
    is published (dead letters)."""

    def __init__(self):
        self.options, self.published = {}, []

    def subscriber(self, *args, **options):
        self.options = options
        return lambda handler: handler

    async def publish(self, body, topic, key=None, headers=None):
        self.published.append((topic, body, headers))
