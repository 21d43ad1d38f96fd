"""Transient or permanent: what a failure means for the message or request that met it.

A transient failure is a dependency that does not answer (the database, the broker). Retrying later will
succeed, so a consumer pauses and retries until the dependency is back, and an HTTP request is answered
503 with Retry-After. Never dead-letter a message for one of these.

A permanent failure is about the message or request itself: it does not parse, it breaks a contract,
or a rule refuses it. Retrying gives the same result. Only these go to the dead-letter topic.

`Health` remembers which dependency is down right now. Readiness reports it, and HTTP answers 503 at once
instead of waiting for the driver's timeout on every request.
"""
from __future__ import annotations

import time

from aiokafka import errors as kafka_errors
from pymongo import errors as mongo_errors


class Transient(Exception):
    """Raise for a failure that goes away by itself (e.g. an optimistic write that kept conflicting)."""


_KAFKA_TRANSIENT = (kafka_errors.KafkaConnectionError, kafka_errors.KafkaTimeoutError,
                    kafka_errors.NodeNotReadyError, kafka_errors.RequestTimedOutError)


def dependency_of(exc: BaseException) -> str | None:
    """"mongodb", "kafka" or "other" for a transient failure (also when it is the cause of `exc`),
    None for a permanent one."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, mongo_errors.ConnectionFailure):  # AutoReconnect, NetworkTimeout, ServerSelectionTimeout...
            return "mongodb"
        if isinstance(exc, _KAFKA_TRANSIENT) or (isinstance(exc, kafka_errors.KafkaError) and exc.retriable):
            return "kafka"
        if isinstance(exc, (Transient, ConnectionError, TimeoutError)):
            return "other"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def is_transient(exc: BaseException) -> bool:
    return dependency_of(exc) is not None


def backoff(attempt: int, first: float = 0.2, cap: float = 5.0) -> float:
    """Seconds to wait before retry number `attempt` (0-based): doubling from `first`, never above `cap`."""
    return min(cap, first * 2 ** min(attempt, 30))


class Health:
    """Which dependencies are down now, as learnt from failures and from probes."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._down: dict[str, float] = {}  # dependency -> since when
        self.paused: set[str] = set()  # consumers waiting for a dependency (topic names)
        self.retries = 0  # transient failures met by consumers (each one retried, never dead-lettered)

    def failed(self, dependency: str) -> None:
        self._down.setdefault(dependency, self._clock())

    def recovered(self, dependency: str) -> None:
        self._down.pop(dependency, None)

    def is_down(self, dependency: str) -> bool:
        return dependency in self._down

    def down(self) -> dict[str, float]:
        """Dependency -> seconds it has been down."""
        now = self._clock()
        return {d: round(now - since, 1) for d, since in self._down.items()}
