"""Delivery status notifications (bounces, RFC 3464): which recipient failed, how, and which of our messages it was.

A DSN is a multipart/report (RFC 6522) with report-type=delivery-status: a human part, a message/delivery-status
part (one block of per-message fields, then one block per recipient: Final-Recipient, Action, Status, ...) and
usually the returned headers, which carry our Message-ID. Status 5.x.x with Action failed is permanent (a hard
bounce: the channel is paused); 4.x.x or Action delayed is transient (recorded only).
"""
from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email import policy
from email.message import Message


@dataclass(frozen=True)
class Bounce:
    address: str
    action: str
    status: str
    diagnostic: str
    message_id: str | None

    @property
    def permanent(self) -> bool:
        return self.action == "failed" and self.status.startswith("5")


def parse(raw: bytes) -> list[Bounce]:
    """Every recipient a DSN reports on; [] when the message is not a delivery-status report."""
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    if msg.get_content_type() != "multipart/report" or msg.get_param("report-type") != "delivery-status":
        return []
    blocks: list[Message] = []
    message_id = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            blocks = [b for b in part.get_payload() if isinstance(b, Message)]
        elif ctype in ("text/rfc822-headers", "message/rfc822", "message/rfc822-headers") and message_id is None:
            message_id = _returned_message_id(part)
    out = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:  # the first block is per-message
        recipient = block.get("Final-Recipient") or block.get("Original-Recipient")
        if not recipient:
            continue
        out.append(Bounce(address=_address(recipient), action=(block.get("Action") or "").strip().lower(),
                          status=(block.get("Status") or "").strip(),
                          diagnostic=" ".join((block.get("Diagnostic-Code") or "").split())[:300],
                          message_id=message_id))
    return out


def _address(field: str) -> str:
    """`rfc822; someone@example.jp` -> `someone@example.jp` (address type per RFC 3464 2.3.2)."""
    value = field.split(";", 1)[1] if ";" in field else field
    return value.strip().strip("<>").lower()


def _returned_message_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0].get("Message-ID")
    text = payload if isinstance(payload, str) else ""
    found = re.search(r"^Message-ID:\s*(<[^>]+>)", text, re.IGNORECASE | re.MULTILINE)
    return found.group(1) if found else None
