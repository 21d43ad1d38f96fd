"""R-POR-05 application intake: the pure rules (prefill with sources, autosave versions, submission checks, the
deadline judged by arrival time, chunk bookkeeping) and the local blob store."""
from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recommend_service import intake
from recommend_service.blobs import LocalBlobStore
from servicekit.refusals import Rejected

CATALOGUE = Path(__file__).resolve().parents[2] / "services/recommend/src/recommend_service/programmes.json"
FORM = {"deadline": "2027-03-31T17:00:00+09:00",
        "fields": [{"name": "business_name", "required": True, "prefill": "name"},
                   {"name": "employees", "required": True, "prefill": "employees"},
                   {"name": "latest_sales", "required": True, "prefill": "financials[-1].sales"},
                   {"name": "plan", "required": True},
                   {"name": "note", "required": False}],
        "documents": [{"doc_id": "business_plan", "required": True}, {"doc_id": "extra", "required": False}]}
PROFILE = {"name": "熊本精工株式会社", "employees": 12, "profile_version": 3,
           "financials": [{"fiscal_year": 2023, "sales": 90_000_000}, {"fiscal_year": 2024, "sales": 100_000_000}]}
DEADLINE = datetime(2027, 3, 31, 8, 0, tzinfo=UTC)


def test_R_POR_05_prefill_takes_profile_values_with_their_source_and_leaves_the_rest_typed():
    fields = intake.prefill(FORM, PROFILE)
    assert fields["business_name"] == {"value": "熊本精工株式会社", "source": "profile v3 (identity)"}
    assert fields["latest_sales"] == {"value": 100_000_000, "source": "profile v3 (identity)"}  # the latest period
    assert fields["plan"] == {"value": None, "source": "typed"}
    # a profile without financials leaves the field to be typed, never an error
    assert intake.prefill(FORM, {"name": "x"})["latest_sales"] == {"value": None, "source": "typed"}


def test_R_POR_05_autosave_last_write_wins_by_version_and_stale_version_conflicts():
    fields = intake.prefill(FORM, PROFILE)
    new, v, changed = intake.apply_patch(FORM, fields, 1, 1, {"plan": "新工場", "employees": 13})
    assert (v, changed) == (2, True)
    assert new["plan"] == {"value": "新工場", "source": "typed"} and new["employees"]["source"] == "typed"
    # the same autosave sent again (on the old version) changes nothing and is not a conflict: idempotent
    assert intake.apply_patch(FORM, new, 2, 1, {"plan": "新工場"}) == (new, 2, False)
    with pytest.raises(Rejected) as e:
        intake.apply_patch(FORM, new, 2, 1, {"plan": "別の計画"})
    assert e.value.kind == "conflict" and e.value.extra["current_version"] == 2
    with pytest.raises(Rejected) as e:
        intake.apply_patch(FORM, new, 2, 2, {"nope": 1})
    assert e.value.extra["code"] == "unknown_field"


def test_R_POR_05_required_fields_and_documents_are_checked_on_submission():
    fields = intake.prefill(FORM, PROFILE)
    assert intake.missing(FORM, fields, {}) == ["plan", "document:business_plan"]
    with pytest.raises(Rejected) as e:
        intake.check_submission(FORM, "draft", fields, {}, DEADLINE - timedelta(hours=1), None)
    assert e.value.kind == "invalid" and e.value.extra["missing"] == ["plan", "document:business_plan"]
    fields["plan"] = {"value": "計画", "source": "typed"}
    intake.check_submission(FORM, "draft", fields, {"business_plan": "upl-1"}, DEADLINE - timedelta(hours=1), None)
    with pytest.raises(Rejected):
        intake.check_submission(FORM, "submitted", fields, {"business_plan": "upl-1"}, DEADLINE, None)


def test_R_POR_05_deadline_is_judged_by_arrival_time_not_by_when_processing_ends():
    fields = {**intake.prefill(FORM, PROFILE), "plan": {"value": "計画", "source": "typed"}}
    docs = {"business_plan": "upl-1"}
    # arrived at the deadline itself: in time (processing finishing later does not enter the rule at all)
    intake.check_submission(FORM, "draft", fields, docs, DEADLINE, None)
    assert intake.in_time(DEADLINE, DEADLINE, 0) and not intake.in_time(DEADLINE + timedelta(microseconds=1), DEADLINE, 0)
    # the platform's own queueing before the stamp does not make anyone late (grace); an applicant beyond it is
    grace = intake.DEADLINE_GRACE_SECONDS
    intake.check_submission(FORM, "draft", fields, docs, DEADLINE + timedelta(seconds=grace), None)
    with pytest.raises(Rejected) as e:
        intake.check_submission(FORM, "draft", fields, docs, DEADLINE + timedelta(seconds=grace + 1), None)
    assert e.value.extra["code"] == "deadline_passed" and e.value.kind == "conflict"
    # a returned application first submitted in time may be resubmitted after the deadline
    intake.check_submission(FORM, "returned", fields, docs, DEADLINE + timedelta(days=3), DEADLINE - timedelta(days=1))
    assert intake.deadline_of({"deadline": "2027-03-31T17:00:00+09:00"}) == DEADLINE


def test_R_POR_05_arrival_is_the_gateways_stamp_when_present_and_plausible():
    own = datetime(2027, 3, 31, 8, 0, 30, tzinfo=UTC)  # the service read the request 30 s after the gateway got it
    gw = datetime(2027, 3, 31, 8, 0, 0, 123000, tzinfo=UTC)
    ms = str(int(gw.timestamp() * 1000))
    assert intake.arrival(ms, own) == gw  # queued 30 s behind the gateway: the gateway's stamp counts, to the ms
    assert intake.arrival(f" {ms} ", own) == gw
    # no header (a direct call, not through the gateway) or not an epoch-ms integer: the service's own stamp
    for bad in (None, "", "2027-03-31T08:00:00Z", "-5", "1.5", "abc", "9" * 16):
        assert intake.arrival(bad, own) == own
    # implausible against the service's clock: far in the past or ahead of it beyond the skew allowed
    old = str(int((own - timedelta(seconds=intake.ARRIVAL_MAX_AGE_SECONDS + 1)).timestamp() * 1000))
    ahead = str(int((own + timedelta(seconds=intake.ARRIVAL_MAX_AHEAD_SECONDS + 1)).timestamp() * 1000))
    assert intake.arrival(old, own) == own and intake.arrival(ahead, own) == own
    # a gateway clock a little ahead never makes a request later than the service itself saw it
    assert intake.arrival(str(int((own + timedelta(seconds=1)).timestamp() * 1000)), own) == own


def test_R_POR_05_receipt_number_is_stable_per_submission():
    assert intake.receipt_number("app-1", 1) == intake.receipt_number("app-1", 1) != intake.receipt_number("app-1", 2)


def test_R_POR_05_chunk_bookkeeping_resend_is_idempotent_and_missing_chunks_are_listed():
    size, cs = 2500, 1024
    data = bytes(range(256)) * 10
    data = data[:size]
    chunks = [data[i:i + cs] for i in range(0, size, cs)]
    assert intake.chunk_count(size, cs) == 3 and intake.expected_chunk_length(size, 2, cs) == 452
    present: dict[str, str] = {}
    d0, new = intake.check_chunk(size, 0, chunks[0], hashlib.sha256(chunks[0]).hexdigest(), present, cs)
    assert new
    present["0"] = d0
    assert intake.check_chunk(size, 0, chunks[0], d0, present, cs) == (d0, False)  # re-sent: not new
    with pytest.raises(Rejected):
        intake.check_chunk(size, 1, chunks[1], None, present, cs)  # every chunk carries its checksum
    assert intake.missing_chunks(size, present, cs) == [1, 2]
    with pytest.raises(Rejected) as e:
        intake.check_chunk(size, 1, chunks[1], "0" * 64, present, cs)
    assert e.value.extra["code"] == "chunk_checksum"
    with pytest.raises(Rejected) as e:
        intake.check_chunk(size, 2, chunks[2][:-1], "0" * 64, present, cs)
    assert e.value.extra["code"] == "chunk_length"
    with pytest.raises(Rejected):
        intake.check_chunk(size, 3, b"", "0" * 64, present, cs)
    with pytest.raises(Rejected) as e:
        intake.check_complete(size, present, hashlib.sha256(data).hexdigest(), "", cs)
    assert e.value.extra["missing"] == [1, 2]


def test_R_POR_05_uploads_limit_size_and_type():
    intake.check_upload(1000, "application/pdf")
    with pytest.raises(Rejected):
        intake.check_upload(intake.MAX_UPLOAD_BYTES + 1, "application/pdf")
    with pytest.raises(Rejected):
        intake.check_upload(10, "application/x-msdownload")


def test_R_POR_05_local_blob_store_assembles_chunks_and_verifies_the_whole(tmp_path):
    blobs = LocalBlobStore(tmp_path)
    data = b"abc" * 1000
    for n in (1, 0, 2, 1):  # out of order, one sent twice
        blobs.put_chunk("upl-x", n, data[n * 1024:(n + 1) * 1024])
    assert blobs.assemble("upl-x", 3) == hashlib.sha256(data).hexdigest()
    assert blobs.open("upl-x").read() == data
    with pytest.raises(ValueError):
        blobs.put_chunk("../etc", 0, b"x")


def test_R_POR_05_catalogue_forms_prefill_from_profile_paths_that_exist():
    forms = [p["form"] for p in json.loads(CATALOGUE.read_text()) if p.get("form")]
    assert len(forms) >= 3
    for form in forms:
        intake.deadline_of(form)
        assert any(f.get("prefill") for f in form["fields"]) and form["documents"]
        for f in form["fields"]:
            if f.get("prefill"):
                assert intake._PATH.match(f["prefill"]), f


def test_R_POR_05_submission_in_time_with_an_attachment_still_uploading_is_accepted_and_review_waits_for_it():
    fields = {**intake.prefill(FORM, PROFILE), "plan": {"value": "計画", "source": "typed"}}
    # the upload of the business plan was started (size and sha256 declared); its bytes are still arriving
    intake.check_submission(FORM, "draft", fields, {}, DEADLINE, None, pending={"business_plan": "upl-1"})
    with pytest.raises(Rejected) as e:
        intake.check_review("submitted", {"business_plan": "upl-1"})
    assert e.value.extra["code"] == "attachments_pending"
    intake.check_review("submitted", {})
    # once submitted, only the upload the submission was made with may still be attached
    assert intake.may_attach("submitted", {"business_plan": "upl-1"}, "business_plan", "upl-1")
    assert not intake.may_attach("submitted", {"business_plan": "upl-1"}, "business_plan", "upl-2")
    assert not intake.may_attach("accepted", {}, "business_plan", "upl-1")
    assert intake.may_attach("draft", {}, "business_plan", "upl-2")
