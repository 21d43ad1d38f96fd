"""The secret of the EBPM record keys (R-REC-07, `servicekit.ebpm`), shared by every replica of a service: from
`EBPM_KEY_SECRET` (or the file named by `EBPM_KEY_SECRET_FILE`), else 32 random bytes made once and kept in the
service's own database (`keys`, `_id: "ebpm"`; the first replica's insert wins). It must stay secret: whoever knows
it can compute the perturbation of a cell whose businesses they know, and so undo it."""
from __future__ import annotations

import os
import secrets

from pymongo.errors import DuplicateKeyError

from servicekit.ebpm import Params

_cached: dict[str, Params] = {}


async def params(db) -> Params:
    if db.name in _cached:
        return _cached[db.name]
    min_cell = int(os.environ.get("EBPM_MIN_CELL", "5"))
    if path := os.environ.get("EBPM_KEY_SECRET_FILE"):
        with open(path, "rb") as f:
            secret = f.read().strip()
    elif os.environ.get("EBPM_KEY_SECRET"):
        secret = os.environ["EBPM_KEY_SECRET"].encode()
    else:
        try:
            await db.keys.insert_one({"_id": "ebpm", "value": secrets.token_bytes(32)})
        except DuplicateKeyError:
            pass
        secret = bytes((await db.keys.find_one({"_id": "ebpm"}))["value"])
    _cached[db.name] = Params(secret=secret, min_cell=min_cell)
    return _cached[db.name]
