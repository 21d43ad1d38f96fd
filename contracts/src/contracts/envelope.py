"""The envelope every Kafka message carries, and the base class of every event and command payload."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

# W3C trace context travels in Kafka headers (never in the body), so any consumer can join the trace.
TRACE_HEADERS = ("traceparent", "tracestate")


class Message(BaseModel):
    """Base of every event/command payload. Subclasses set the class variables below.

    `message_type` is stable forever; `version` goes up on every backward-incompatible change
    (removing or retyping a field, making an optional field required); the schema check in the
    test suite refuses such a change without the bump.
    """

    # Unknown fields are ignored so an added optional field never breaks an older consumer.
    model_config = ConfigDict(extra="ignore", frozen=True)

    message_type: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[str]
    key_field: ClassVar[str]  # the payload field whose value is the Kafka key (the aggregate id)

    def key(self) -> str:
        return str(getattr(self, self.key_field))


class Envelope(BaseModel):
    """Metadata around a payload. JSON on the wire; `payload` is validated against the registry model."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()), description="unique id; consumers dedupe on it")
    event_type: str
    schema_version: int = Field(ge=1)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    key: str = Field(min_length=1, description="aggregate id; also the Kafka message key")
    producer: str = Field(description="the service that emitted it")
    actor: str | None = Field(default=None, description="subject of the caller whose action caused it (audit)")
    client_id: str | None = Field(default=None, description="the OAuth client the caller acted through (audit, "
                                                            "R-OPS-02): the portal, or a third-party application")
    correlation_id: str | None = None
    causation_id: str | None = Field(default=None, description="event_id of the message that caused this one")
    payload: dict

    @classmethod
    def wrap(cls, message: Message, *, producer: str, actor: str | None = None, client_id: str | None = None,
             correlation_id: str | None = None, causation_id: str | None = None,
             event_id: str | None = None) -> "Envelope":
        """`event_id`: a deterministic id for a message that may be produced again (the same answer to the same
        command), so consumers drop the repeat; default a fresh one."""
        return cls(
            **({"event_id": event_id} if event_id else {}),
            event_type=message.message_type,
            schema_version=message.version,
            key=message.key(),
            producer=producer,
            actor=actor,
            client_id=client_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            payload=message.model_dump(mode="json"),
        )
