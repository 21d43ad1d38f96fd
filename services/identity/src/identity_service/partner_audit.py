"""A client's export of the audit of its own calls (R-EXT-04): every entry identity recorded with the client as the
actor (prefill reads served and refused, and what its tokens changed), as JSON or CSV, for its token with the scope
`audit:read`."""
from __future__ import annotations

import csv
import io
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from servicekit.auth import Principal, require

router = APIRouter(tags=["clients"])


@router.get("/clients/me/audit", summary="The audit of this client's own calls, newest first (JSON or CSV; scope audit:read)")
async def own_audit(request: Request, fmt: str = Query("json", alias="format", pattern="^(json|csv)$"),
                    since: datetime | None = None, limit: int = Query(1000, ge=1, le=10_000),
                    who: Principal = Depends(require("client", scope="audit:read"))):
    query: dict = {"actor": who.client_id}
    if since is not None:
        query["at"] = {"$gte": since}
    rows = [{"at": e["at"].isoformat(), "action": e["action"], "key": e["key"],
             "fields": " ".join(e.get("payload", {}).get("fields", []))}
            async for e in request.app.state.service.db.audit.find(query).sort("at", -1).limit(limit)]
    if fmt == "json":
        return rows
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["at", "action", "key", "fields"])
    writer.writeheader()
    writer.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="audit.csv"'})
