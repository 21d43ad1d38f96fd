"""A domain's refusal, with no HTTP in it: domains and stores raise `Rejected`; the edge (servicekit.problems) turns
it into a problem document (`conflict` 409, `invalid` 422, `forbidden` 403, `not_found` 404)."""
from __future__ import annotations

from typing import Literal

Kind = Literal["conflict", "invalid", "forbidden", "not_found"]
HTTP_STATUS: dict[str, int] = {"conflict": 409, "invalid": 422, "forbidden": 403, "not_found": 404}


class Rejected(Exception):
    """`raise Rejected("conflict", "Visits are closed", "Visit times cannot change once confirmed.", code="...")`."""

    def __init__(self, kind: Kind, title: str, detail: str = "", **extra):
        super().__init__(detail or title)
        self.kind, self.title, self.detail, self.extra = kind, title, detail, extra
