"""Structured JSON logs on stdout, each line carrying the current trace and span id."""
from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ctx = trace.get_current_span().get_span_context()
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if ctx.is_valid:
            doc["trace_id"] = format(ctx.trace_id, "032x")
            doc["span_id"] = format(ctx.span_id, "016x")
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class RateLimit(logging.Filter):
    """Warnings and errors of one kind (logger, message, exception type) pass `burst` times per `window`
    seconds; the rest are counted, and the next line of that kind that passes says how many were suppressed
    (`suppressed`). While a dependency is down every message meets the same error, and this keeps that to a
    few lines per kind instead of tens of thousands. Info and debug lines always pass."""

    def __init__(self, window: float = 10.0, burst: int = 3, clock=time.monotonic):
        super().__init__()
        self.window, self.burst, self._clock = window, burst, clock
        self._kinds: dict[tuple, list] = {}  # kind -> [window start, passed in window, suppressed since last pass]
        self.suppressed_total = 0

    @staticmethod
    def kind(record: logging.LogRecord) -> tuple:
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        error = getattr(record, "fields", {}).get("error_kind")
        return record.name, str(record.msg), exc, error

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now, key = self._clock(), self.kind(record)
        state = self._kinds.get(key)
        if state is None or now - state[0] >= self.window:
            suppressed = state[2] if state else 0
            state = self._kinds[key] = [now, 0, 0]
        else:
            suppressed = state[2]
        if state[1] >= self.burst:
            state[2] += 1
            self.suppressed_total += 1
            return False
        state[1] += 1
        if suppressed:
            state[2] = 0
            record.fields = {**getattr(record, "fields", {}), "suppressed": suppressed}
        if len(self._kinds) > 1000:  # kinds are few; this only guards against a message text built per event
            self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.window}
        return True


rate_limit = RateLimit()  # the process's limiter; `rate_limit.suppressed_total` counts the lines it held back


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(rate_limit)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel("WARNING")
