"""The metrics every service has besides FastAPI's request metrics (names and meaning in the README):

- `smeportal.consumer.lag` — messages of each consumed topic/partition this replica holds that its group has not
  committed yet (end offset − committed offset), refreshed every `METRICS_REFRESH_SECONDS`;
- `smeportal.outbox.depth` — events waiting in the outbox of each collection, as the relay's last full scan found
  them (a scan reads at most 200 documents per collection, so the figure is "at least" beyond that);
- `smeportal.outbox.published` — events the relay published, per topic;
- `smeportal.dead_letters` — messages this service wrote to a dead-letter topic, per consumed topic;
- `smeportal.messages.retried` — handler runs that failed and were tried again, per consumed topic.

Observable instruments read counters the kit keeps anyway, so an unread metric costs nothing on the message path.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Observation

if TYPE_CHECKING:
    from servicekit.service import Service

log = logging.getLogger("servicekit.metrics")


class KitMetrics:
    def __init__(self, svc: "Service"):
        self.svc = svc
        self.lag: dict[tuple[str, int], int] = {}  # (logical topic, partition) -> lag
        m = svc.meter
        m.create_observable_gauge("smeportal.consumer.lag", [self._lag], unit="{message}",
                                  description="Messages of an assigned partition not yet committed by the group")
        m.create_observable_gauge("smeportal.outbox.depth", [self._outbox_depth], unit="{event}",
                                  description="Events waiting in the outbox at the relay's last full scan")
        m.create_observable_counter("smeportal.outbox.published", [self._published], unit="{event}",
                                    description="Events the outbox relay published")
        m.create_observable_counter("smeportal.dead_letters", [self._dead_letters], unit="{message}",
                                    description="Messages written to a dead-letter topic")
        m.create_observable_counter("smeportal.messages.retried", [self._retried], unit="{message}",
                                    description="Handler runs that failed and were tried again")

    # --- callbacks (run when /metrics is read or the OTLP reader collects) ---------------------------------------
    def _lag(self, _: CallbackOptions):
        group = f"{self.svc.settings.topic_prefix}{self.svc.name}"
        return [Observation(v, {"messaging.destination.name": t, "messaging.destination.partition.id": str(p),
                                "messaging.consumer.group.name": group}) for (t, p), v in self.lag.items()]

    def _outbox_depth(self, _: CallbackOptions):
        return [Observation(v, {"collection": c}) for c, v in self.svc.relay.depth.items()]

    def _published(self, _: CallbackOptions):
        return [Observation(v, {"messaging.destination.name": self.svc.settings.logical(t)})
                for t, v in self.svc.relay.published.items()]

    def _dead_letters(self, _: CallbackOptions):
        return [Observation(c.dead_letters, {"messaging.destination.name": t}) for t, c in self.svc.consumers.items()]

    def _retried(self, _: CallbackOptions):
        return [Observation(c.retries, {"messaging.destination.name": t}) for t, c in self.svc.consumers.items()]

    # --- consumer lag, asked of the broker in the background -------------------------------------------------------
    async def refresh_lag(self) -> None:
        """end offset − committed offset of every partition assigned to this replica's consumers."""
        lag: dict[tuple[str, int], int] = {}
        for sub in self.svc.broker.subscribers:
            consumer = getattr(sub, "consumer", None)
            parts = list(consumer.assignment()) if consumer is not None else []
            if not parts:
                continue
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                committed = await consumer.committed(tp)
                if committed is None:
                    committed = (await consumer.beginning_offsets([tp]))[tp]
                lag[(self.svc.settings.logical(tp.topic), tp.partition)] = max(0, ends[tp] - committed)
        self.lag = lag

    async def run(self) -> None:
        while True:
            try:
                await self.refresh_lag()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker is away: keep the last figures, try again next round
                log.debug("consumer lag not refreshed", extra={"fields": {"error": repr(e)}})
            await asyncio.sleep(self.svc.settings.metrics_refresh_seconds)
