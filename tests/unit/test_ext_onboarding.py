"""R-EXT-01 onboarding review, pure: the checklist in docs/ and the code agree; approval needs every item checked;
each decision only from the statuses it applies to; suspension always possible."""
import re
from pathlib import Path

from identity_service.developers import CHECKLIST, review_problem

DOC = Path(__file__).resolve().parents[2] / "docs" / "partner-security-checklist.md"


def test_R_EXT_01_the_published_checklist_is_the_one_reviews_check():
    assert re.findall(r"^\| (EXT-SEC-\d\d) \|", DOC.read_text(), flags=re.M) == CHECKLIST


def test_R_EXT_01_approval_needs_every_item_and_an_application_in_review():
    assert review_problem("in_review", "approve", CHECKLIST) is None
    assert "EXT-SEC-08" in review_problem("in_review", "approve", CHECKLIST[:-1])
    assert review_problem("sandbox", "approve", CHECKLIST) is not None, "no production without applying"
    assert review_problem("approved", "return", []) is not None
    for status in ("sandbox", "in_review", "approved", "returned"):
        assert review_problem(status, "suspend", []) is None
    assert review_problem("suspended", "approve", CHECKLIST) is not None
