"""The gateway's deny list (R-ID-09): HAProxy itself refuses revoked tokens, clients and accounts.

Runs next to each HAProxy (`python -m servicekit.gateway_sync`: started by deploy/local/gateway.sh, a sidecar in
deploy/compose.yaml and deploy/k8s/gateway.yaml). It reads identity.events and keeps the HAProxy map
GATEWAY_DENY_MAP, one line per revocation:

    jti:<jti> token          TokenRevoked   (dropped once the token has expired anyway: TokenRevoked.expires_at)
    cid:<client_id> client   ClientRevoked  (stays)
    sub:<account_id> account AccountRevoked (stays)

The gateway looks the verified token's `jti`, `client_id` and `sub` up in it and answers 401 "this <token|client|
account> has been revoked" before routing (deploy/local/haproxy.cfg.tmpl).

- Start: every partition is replayed from the beginning, so a new replica is complete; then the map file is
  written (gateway.sh and the k8s/compose start-up wait for it before HAProxy starts) and the running HAProxy's
  map, if there is one, is replaced in one commit through its runtime API (GATEWAY_ADMIN_SOCKET).
- Then each revocation is written to the file (what a restarted HAProxy loads) and added to the running map
  (`add map`). When HAProxy cannot be reached, the whole map is pushed again as soon as it can.
- Only revocations that strike a whole token are here. An ended binding, a withdrawn consent or a revoked
  delegation take one business out of a token that stays valid otherwise: the services strike those
  (servicekit.service._honour_revocations).

Records are read by the rules of every consumer (servicekit.bus.decode). One that can never be read goes to
identity.events.dlq once: the consumer group `gateway-sync` records how far the gateway has read, and a replica
replaying older records does not dead-letter them again (each replica assigns itself every partition; the group
only keeps offsets). Logs name accounts and clients by id and tokens by a hash of their jti.

With JWT_JWKS_URL set, the same process also follows identity's signing keys (servicekit.gateway_keys, R-EXT-04).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts import TOPICS, Envelope, Message
from contracts.events.identity import AccountRevoked, ClientRevoked, TokenRevoked
from servicekit.bus import Undeliverable, dead_letter_headers, decode, ensure_topics
from servicekit.gateway_keys import KeyFollower
from servicekit.logs import setup_logging
from servicekit.settings import Settings

log = logging.getLogger("gateway-sync")
TOPIC = "identity.events"
MODELS: dict[str, type[Message]] = {m.message_type: m for m in (TokenRevoked, ClientRevoked, AccountRevoked)}
# what may follow `jti:` / `cid:` / `sub:` in a map key: nothing the map file or HAProxy's CLI would split on
_SAFE_ID = re.compile(r"[A-Za-z0-9._~@:+=-]{1,256}")


class SyncSettings(Settings):
    service_name: str = "gateway-sync"
    gateway_deny_map: str = "var/gateway/deny.map"  # the map file, named exactly as in haproxy.cfg
    gateway_admin_socket: str = "var/run/gateway.sock"  # HAProxy's stats socket (level admin)
    gateway_sync_sweep_seconds: float = 60  # how often expired token entries are dropped
    # R-EXT-04 (servicekit.gateway_keys): identity's JWKS followed into per-kid key files, HAProxy reloaded on change
    gateway_jwks_dir: str = "var/gateway/jwks"
    gateway_jwks_poll_seconds: float = 2.0
    gateway_reload_command: str = ""


# --- the deny list itself (pure) -----------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    what: str  # token | client | account: HAProxy answers "this <what> has been revoked"
    expires_at: int | None = None  # tokens only: the entry may go after this Unix time


def entry_for(msg: Message) -> tuple[str, Entry]:
    """The map key and entry a revocation event makes."""
    if isinstance(msg, TokenRevoked):
        key, entry = f"jti:{msg.jti}", Entry("token", msg.expires_at)
    elif isinstance(msg, ClientRevoked):
        key, entry = f"cid:{msg.client_id}", Entry("client")
    elif isinstance(msg, AccountRevoked):
        key, entry = f"sub:{msg.account_id}", Entry("account")
    else:
        raise TypeError(f"{type(msg).__name__} revokes nothing at the gateway")
    if not _SAFE_ID.fullmatch(key[4:]):
        raise Undeliverable(f"{msg.message_type}: the {entry.what} id cannot be a gateway map key "
                            "(letters, digits and ._~@:+=- only, at most 256)")
    return key, entry


class DenyList:
    """Key -> entry, as the map file holds it."""

    def __init__(self):
        self.entries: dict[str, Entry] = {}

    def add(self, key: str, entry: Entry, now: float) -> bool:
        """Records a revocation; True when the map gains a key (a token already dead gains nothing)."""
        if entry.expires_at is not None and entry.expires_at <= now:
            return False
        old = self.entries.get(key)
        if old is not None:
            if old.expires_at is not None and (entry.expires_at is None or entry.expires_at > old.expires_at):
                self.entries[key] = entry
            return False
        self.entries[key] = entry
        return True

    def sweep(self, now: float) -> list[str]:
        """Drops the entries of tokens that have expired anyway; their keys."""
        gone = [k for k, e in self.entries.items() if e.expires_at is not None and e.expires_at <= now]
        for k in gone:
            del self.entries[k]
        return gone

    def lines(self) -> list[str]:
        return [f"{k} {e.what}\n" for k, e in sorted(self.entries.items())]

    def counts(self) -> dict[str, int]:
        out = {"token": 0, "client": 0, "account": 0}
        for e in self.entries.values():
            out[e.what] += 1
        return out


def described(key: str) -> dict:
    """How a log line names a map key: accounts and clients by id, tokens by a hash of their jti."""
    kind, value = key.split(":", 1)
    if kind == "jti":
        return {"jti_sha256": hashlib.sha256(value.encode()).hexdigest()[:16]}
    return {"client_id" if kind == "cid" else "account_id": value}


# --- HAProxy's runtime API ---------------------------------------------------------------------------
class HAProxyError(RuntimeError):
    """HAProxy answered a runtime API command with an error."""


class HAProxyMap:
    """One map of a running HAProxy, changed through its stats socket (one command per connection)."""

    BATCH = 200  # lines per `add map` payload: well inside HAProxy's 16 kB command buffer

    def __init__(self, socket_path: str, map_path: str):
        self.socket_path, self.map = socket_path, map_path

    async def command(self, line: str) -> str:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.socket_path), 2)
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.read(), 5)).decode(errors="replace")  # HAProxy closes after one
        finally:
            writer.close()

    async def _ok(self, line: str) -> None:
        if answer := (await self.command(line)).strip():
            raise HAProxyError(answer[:300])

    async def add(self, key: str, value: str) -> None:
        await self._ok(f"add map {self.map} {key} {value}")

    async def replace(self, lines: list[str]) -> None:
        """The whole map at once: a new version filled, then committed (requests see the old or the new one)."""
        answer = await self.command(f"prepare map {self.map}")
        version = re.search(r"New version created: (\d+)", answer)
        if not version:
            raise HAProxyError(answer.strip()[:300])
        for i in range(0, len(lines), self.BATCH):
            # the payload ends at an empty line: the one command() ends the last line with
            await self._ok(f"add map @{version[1]} {self.map} <<\n" + "".join(lines[i:i + self.BATCH]))
        await self._ok(f"commit map @{version[1]} {self.map}")


# --- the process -----------------------------------------------------------------------------------
class GatewaySync:
    def __init__(self, settings: SyncSettings):
        self.settings = settings
        self.topic, self.dlq = settings.topic(TOPIC), settings.topic(TOPICS[TOPIC].dlq)
        self.deny = DenyList()
        self.haproxy = HAProxyMap(settings.gateway_admin_socket, settings.gateway_deny_map)
        self.in_sync = False  # the running HAProxy holds every entry of self.deny
        self.haproxy_state = ""  # last logged reachability, so an absent HAProxy is logged once, not every try
        self.read_before: dict[TopicPartition, int] = {}  # the group's offsets at start: what was read before

    async def run(self) -> None:
        s = self.settings
        await self._wait_for_kafka()
        client = f"{s.service_name}-{socket.gethostname()}"
        consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=f"{s.topic_prefix}{s.service_name}",
                                    enable_auto_commit=False, client_id=client)
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=True,
                                         client_id=client)
        await consumer.start()
        await self.producer.start()
        try:
            tps = await self._assign_all(consumer)
            await self._rebuild(consumer, tps)
            await self._follow(consumer)
        finally:
            await consumer.stop()
            await self.producer.stop()

    async def _wait_for_kafka(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return await ensure_topics(self.settings, {TOPIC})
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)

    async def _assign_all(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Every partition of the topic, to this replica alone (a group subscription would split them)."""
        partitions = await self.producer.partitions_for(self.topic)  # waits for the topic's metadata
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            self.read_before[tp] = await consumer.committed(tp) or 0
        return tps

    async def _rebuild(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        started = time.monotonic()
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records = 0
        while behind := [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(*behind, timeout_ms=1000, max_records=1000)).values():
                for rec in batch:
                    records += 1
                    await self._take(rec)
        self.sweep_at = time.monotonic() + self.settings.gateway_sync_sweep_seconds
        self._write_map()
        if records:
            await consumer.commit()
        log.info("deny list rebuilt", extra={"fields": {
            "topic": self.topic, "records": records, "seconds": round(time.monotonic() - started, 3),
            "map": self.settings.gateway_deny_map, **self.deny.counts()}})
        await self._push_all()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            added = [taken for records in batch.values() for rec in records if (taken := await self._take(rec))]
            if added:
                self._write_map()
                for key, env in added:
                    await self._push_one(key, env)
            if batch:
                await consumer.commit()
            if time.monotonic() >= self.sweep_at:
                self.sweep_at = time.monotonic() + self.settings.gateway_sync_sweep_seconds
                if gone := self.deny.sweep(time.time()):
                    self._write_map()
                    self.in_sync = False
                    log.info("expired token entries dropped", extra={"fields": {"dropped": len(gone)}})
            if not self.in_sync:
                await self._push_all()

    async def _take(self, rec) -> tuple[str, Envelope] | None:
        """Records one identity.events record; (key, envelope) when the map gained a key."""
        try:
            decoded = decode(rec.value, MODELS)
            if decoded is None:
                return None  # an identity event that revokes nothing at the gateway
            env, msg = decoded
            key, entry = entry_for(msg)
        except Undeliverable as e:
            tp = TopicPartition(rec.topic, rec.partition)
            if rec.offset >= self.read_before.get(tp, 0):  # older records were dead-lettered when first read
                await self._dead_letter(rec, str(e))
            return None
        return (key, env) if self.deny.add(key, entry, time.time()) else None

    async def _dead_letter(self, rec, reason: str) -> None:
        log.error("message dead-lettered", extra={"fields": {"topic": rec.topic, "offset": rec.offset, "reason": reason}})
        headers = dead_letter_headers(self.settings.service_name, rec, reason)
        await self.producer.send_and_wait(self.dlq, rec.value, key=rec.key,
                                          headers=[(k, v.encode()) for k, v in headers.items()])

    def _write_map(self) -> None:
        """The map file, replaced atomically: what HAProxy loads when it (re)starts."""
        path = Path(self.settings.gateway_deny_map)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("# revoked tokens (jti:), clients (cid:) and accounts (sub:): written by servicekit.gateway_sync\n"
                       + "".join(self.deny.lines()))
        os.replace(tmp, path)

    async def _push_one(self, key: str, env: Envelope) -> None:
        entry = self.deny.entries[key]
        state = "pending"
        if self.in_sync:
            try:
                await self.haproxy.add(key, entry.what)
                state = "added"
            except (OSError, asyncio.TimeoutError, HAProxyError) as e:
                self._unreachable(e)
        lag_ms = round((time.time() - env.occurred_at.timestamp()) * 1000)
        log.info("revoked at the gateway", extra={"fields": {
            "what": entry.what, **described(key), "event_id": env.event_id, "lag_ms": lag_ms, "haproxy": state}})

    async def _push_all(self) -> None:
        try:
            await self.haproxy.replace(self.deny.lines())
        except (OSError, asyncio.TimeoutError, HAProxyError) as e:
            return self._unreachable(e)
        self.in_sync = True
        if self.haproxy_state != "synced":
            self.haproxy_state = "synced"
            log.info("haproxy map replaced", extra={"fields": {"entries": len(self.deny.entries),
                                                                "socket": self.settings.gateway_admin_socket}})

    def _unreachable(self, e: Exception) -> None:
        self.in_sync = False
        if self.haproxy_state != "unreachable":  # before HAProxy first answered this is expected (it starts after us)
            level = logging.WARNING if self.haproxy_state == "synced" else logging.INFO
            self.haproxy_state = "unreachable"
            log.log(level, "haproxy runtime API not reachable; HAProxy loads the map file when it starts, and the "
                    "whole map is pushed again once it answers",
                    extra={"fields": {"socket": self.settings.gateway_admin_socket, "error": repr(e)[:300]}})


async def main() -> None:
    settings = SyncSettings()
    setup_logging(settings.service_name, settings.log_level)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    log.info("started", extra={"fields": {"topic": settings.topic(TOPIC), "map": settings.gateway_deny_map}})
    tasks = [GatewaySync(settings).run()]
    if settings.jwt_jwks_url:
        tasks.append(KeyFollower(settings.jwt_jwks_url, settings.gateway_jwks_dir, settings.gateway_reload_command,
                                 settings.gateway_jwks_poll_seconds).run())
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        log.info("stopped")


if __name__ == "__main__":
    asyncio.run(main())
