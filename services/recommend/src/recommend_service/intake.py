"""Application intake for support programmes (R-POR-05): pure rules, no I/O.

- a draft is pre-filled from the business's profile as recommend knows it from identity's events (R-ID-03, once-only
  data); each field carries its value and where the value came from ("profile v3 (identity)" or "typed");
- autosave: last write wins by a version number; a stale version is a conflict, unless the patch changes nothing
  (a retried autosave is idempotent);
- submission: required fields and documents present; the deadline is judged by the request's ARRIVAL time at the
  API, never by when processing ends, so nobody who was in time is refused; a returned application that was first
  submitted in time may be resubmitted after the deadline;
- resumable uploads: fixed-size chunks, each checksummed; which chunks are present, which are missing.
"""
from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from servicekit.refusals import Rejected

CHUNK_SIZE = 1024 * 1024  # bytes of every chunk but the last
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # an attachment's largest size
CONTENT_TYPES = ("application/pdf", "image/jpeg", "image/png", "text/csv",
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
STATUSES = ("draft", "submitted", "returned", "accepted")
EDITABLE = ("draft", "returned")
# The platform's own queueing between a request reaching the host and the service stamping it (a saturated event
# loop in a deadline surge) must not make someone who was in time late: a submission stamped up to this long after the
# deadline is still accepted (its receipt shows the stamp). Erring towards accepting is the rule's intent.
DEADLINE_GRACE_SECONDS = 30.0
# R-POR-05: the gateway stamps every request's arrival (`X-Arrived-At`, epoch milliseconds when its headers were in,
# deploy/local/haproxy.cfg.tmpl) after deleting any client-sent copy, so the stamp is taken before any queue in
# front of the service. A stamp is used only when it is plausible against the service's own clock (not older than
# ARRIVAL_MAX_AGE_SECONDS, not ahead by more than ARRIVAL_MAX_AHEAD_SECONDS); otherwise, or without the header (a
# direct call, not through the gateway), the service's own stamp counts.
ARRIVAL_HEADER = "x-arrived-at"
ARRIVAL_MAX_AGE_SECONDS = 600.0
ARRIVAL_MAX_AHEAD_SECONDS = 5.0
_EPOCH_MS = re.compile(r"^\d{1,15}$")
_PATH = re.compile(r"^([a-z_]+)(?:\[(-?\d+)\]\.([a-z_]+))?$")


# --- prefill ------------------------------------------------------------------------------------------------------
def profile_value(profile: dict, path: str):
    """The value at `path` in the profile: `name`, `employees`, or `financials[-1].sales` (an item of a list, then
    its field). None when the profile has no such value."""
    m = _PATH.match(path)
    if not m:
        return None
    head, index, field = m.groups()
    value = profile.get(head)
    if index is None:
        return value
    if not isinstance(value, list):
        return None
    try:
        item = value[int(index)]
    except IndexError:
        return None
    return item.get(field) if isinstance(item, dict) else None


def profile_source(profile: dict) -> str:
    version = profile.get("profile_version")
    return f"profile v{version} (identity)" if version else "profile (identity)"


def prefill(form: dict, profile: dict) -> dict[str, dict]:
    """R-POR-05 / R-ID-03: every field of the form with its value and source. A field with a `prefill` path the
    profile answers takes the profile's value (source: the profile and its version); any other field is empty and
    will be typed."""
    out = {}
    for f in form.get("fields", []):
        value = profile_value(profile, f["prefill"]) if f.get("prefill") else None
        out[f["name"]] = ({"value": value, "source": profile_source(profile)} if value is not None
                          else {"value": None, "source": "typed"})
    return out


# --- autosave -----------------------------------------------------------------------------------------------------
def check_editable(status: str) -> None:
    if status not in EDITABLE:
        raise Rejected("conflict", "Not editable", f"An application that is {status} cannot be changed.",
                       code="not_editable")


def apply_patch(form: dict, fields: dict[str, dict], version: int, base_version: int,
                values: dict[str, object]) -> tuple[dict[str, dict], int, bool]:
    """Autosave, last write wins by version: (fields, new version, changed). A patch made on the current version
    applies and bumps it; a patch on an older version is a conflict — unless it would change nothing (the same
    autosave sent twice), which answers the current draft. A typed value's source becomes "typed"."""
    names = {f["name"] for f in form.get("fields", [])}
    unknown = sorted(set(values) - names)
    if unknown:
        raise Rejected("invalid", "Unknown fields", f"The form has no field {', '.join(unknown)}.", code="unknown_field")
    same = all(fields.get(k, {}).get("value") == v for k, v in values.items())
    if same:
        return fields, version, False
    if base_version != version:
        raise Rejected("conflict", "Stale draft", f"The draft is at version {version}; you edited version "
                       f"{base_version}. Reload it and apply your changes again.", code="stale_version",
                       current_version=version)
    new = {**fields}
    for k, v in values.items():
        new[k] = {"value": v, "source": "typed"}
    return new, version + 1, True


# --- submission ---------------------------------------------------------------------------------------------------
def missing(form: dict, fields: dict[str, dict], attachments: dict[str, str],
            pending: dict[str, str] | None = None) -> list[str]:
    """Required fields without a value and required documents with neither a completed upload nor one under way
    (declared with its size and sha256: its bytes may finish arriving after the submission), in form order."""
    pending = pending or {}
    out = [f["name"] for f in form.get("fields", []) if f.get("required")
           and fields.get(f["name"], {}).get("value") in (None, "")]
    out += [f"document:{d['doc_id']}" for d in form.get("documents", []) if d.get("required", True)
            and not attachments.get(d["doc_id"]) and not pending.get(d["doc_id"])]
    return out


def deadline_of(form: dict) -> datetime | None:
    d = form.get("deadline")
    if not d:
        return None
    dt = d if isinstance(d, datetime) else datetime.fromisoformat(d)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def arrival(gateway_stamp: str | None, own: datetime, max_age: float = ARRIVAL_MAX_AGE_SECONDS,
            max_ahead: float = ARRIVAL_MAX_AHEAD_SECONDS) -> datetime:
    """When a request arrived at the API: the gateway's stamp (epoch ms) when present and plausible, else `own` (the
    service's stamp). A gateway clock slightly ahead never makes a request later than the service saw it."""
    if not gateway_stamp or not _EPOCH_MS.match(gateway_stamp.strip()):
        return own
    stamp = datetime.fromtimestamp(int(gateway_stamp.strip()) / 1000, UTC)
    age = (own - stamp).total_seconds()
    if age > max_age or -age > max_ahead:
        return own
    return min(stamp, own)


def in_time(arrived_at: datetime, deadline: datetime | None, grace_seconds: float = DEADLINE_GRACE_SECONDS) -> bool:
    """R-POR-05: a request that ARRIVED at or before the deadline is in time, however long processing takes; the
    arrival stamp is allowed the platform's own queueing (`grace_seconds`), never the applicant's lateness beyond."""
    return deadline is None or (arrived_at - deadline).total_seconds() <= grace_seconds


def check_submission(form: dict, status: str, fields: dict, attachments: dict, arrived_at: datetime,
                     first_submitted_at: datetime | None, pending: dict | None = None,
                     grace_seconds: float = DEADLINE_GRACE_SECONDS) -> None:
    """Refusals of a submission, in the order the applicant can act on them. An attachment whose upload was started
    (declared size and sha256) but whose bytes are still arriving does not hold the submission up: in a deadline
    surge the receipt is given on arrival and the transfer finishes afterwards (it is verified against the declared
    sha256 then; the reviewer waits for it)."""
    check_editable(status)
    deadline = deadline_of(form)
    # a returned application was in time when first submitted: its resubmission is never late
    if first_submitted_at is None and not in_time(arrived_at, deadline, grace_seconds):
        raise Rejected("conflict", "Deadline passed", f"Applications closed at {deadline.isoformat()}; this one "
                       f"arrived at {arrived_at.isoformat()}.", code="deadline_passed", deadline=deadline.isoformat())
    gaps = missing(form, fields, attachments, pending)
    if gaps:
        raise Rejected("invalid", "Application incomplete", "Fill in or attach: " + ", ".join(gaps) + ".",
                       code="incomplete", missing=gaps)


def receipt_number(application_id: str, submission: int) -> str:
    """A receipt number the applicant can quote: stable for the application and its n-th submission."""
    digest = hashlib.sha256(application_id.encode()).hexdigest()[:10].upper()
    return f"R{digest}-{submission}"


def check_review(status: str, pending: dict | None = None) -> None:
    if status != "submitted":
        raise Rejected("conflict", "Nothing to review", f"Only a submitted application is reviewed; this one is "
                       f"{status}.", code="not_submitted")
    if pending:
        raise Rejected("conflict", "Attachments still uploading", "The business submitted in time; its attachments "
                       f"{', '.join(sorted(pending))} are still arriving. Review once they are complete.",
                       code="attachments_pending", pending=sorted(pending))


def may_attach(status: str, pending: dict, document: str, upload_id: str) -> bool:
    """A completed upload becomes the document's attachment while the application is editable, or after the
    submission when it is the upload the submission was made with (its bytes arrived after the receipt)."""
    return status in EDITABLE or pending.get(document) == upload_id


# --- resumable uploads --------------------------------------------------------------------------------------------
def check_upload(size: int, content_type: str, max_bytes: int = MAX_UPLOAD_BYTES,
                 allowed: tuple[str, ...] = CONTENT_TYPES) -> None:
    if size > max_bytes:
        raise Rejected("invalid", "File too large", f"An attachment holds at most {max_bytes} bytes; this one has "
                       f"{size}.", code="too_large")
    if content_type not in allowed:
        raise Rejected("invalid", "File type not accepted", f"{content_type} is not accepted; send one of "
                       f"{', '.join(allowed)}.", code="content_type")


def chunk_count(size: int, chunk_size: int = CHUNK_SIZE) -> int:
    return max(1, -(-size // chunk_size))


def expected_chunk_length(size: int, n: int, chunk_size: int = CHUNK_SIZE) -> int:
    count = chunk_count(size, chunk_size)
    if not 0 <= n < count:
        raise Rejected("invalid", "No such chunk", f"Chunks are numbered 0 to {count - 1}.", code="chunk_range")
    return size - chunk_size * (count - 1) if n == count - 1 else chunk_size


def check_chunk(size: int, n: int, data: bytes, declared_sha256: str | None, present: dict[str, str],
                chunk_size: int = CHUNK_SIZE) -> tuple[str, bool]:
    """A chunk's sha256 and whether it is new. The length must be the chunk's; a declared checksum must match; the
    same chunk sent again is idempotent (not new); different bytes for a chunk already stored are a conflict."""
    if not declared_sha256:
        raise Rejected("invalid", "Chunk checksum missing", "Send each chunk with its sha256 in X-Chunk-SHA256.",
                       code="chunk_checksum")
    want = expected_chunk_length(size, n, chunk_size)
    if len(data) != want:
        raise Rejected("invalid", "Wrong chunk length", f"Chunk {n} holds {want} bytes; {len(data)} came.",
                       code="chunk_length")
    digest = hashlib.sha256(data).hexdigest()
    if declared_sha256.lower() != digest:
        raise Rejected("invalid", "Chunk checksum mismatch", f"Chunk {n} arrived with sha256 {digest}, not "
                       f"{declared_sha256}; send it again.", code="chunk_checksum")
    have = present.get(str(n))
    if have is not None and have != digest:
        raise Rejected("conflict", "Chunk already stored", f"Chunk {n} was stored with other bytes.",
                       code="chunk_differs")
    return digest, have is None


def missing_chunks(size: int, present: dict[str, str], chunk_size: int = CHUNK_SIZE) -> list[int]:
    return [n for n in range(chunk_count(size, chunk_size)) if str(n) not in present]


def check_complete(size: int, present: dict[str, str], sha256: str, assembled_sha256: str,
                   chunk_size: int = CHUNK_SIZE) -> None:
    gaps = missing_chunks(size, present, chunk_size)
    if gaps:
        raise Rejected("conflict", "Chunks missing", f"Send chunks {gaps} first.", code="chunks_missing", missing=gaps)
    if assembled_sha256 != sha256.lower():
        raise Rejected("conflict", "File checksum mismatch", f"The assembled file has sha256 {assembled_sha256}, not "
                       f"{sha256}; start the upload again.", code="file_checksum")
