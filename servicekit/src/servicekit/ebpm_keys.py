"""The secret of the EBPM record keys (R-REC-07, `servicekit.ebpm`), shared by every replica of a service: from
the settings `EBPM_KEY_SECRET` (or the file named by `EBPM_KEY_SECRET_FILE`), else 32 random bytes made once and kept in the
service's own database (`keys`, `_id: "ebpm"`; the first replica's insert wins). It must stay secret: whoever knows
it can compute the perturbation of a cell whose businesses they know, and so undo it."""
from __future__ import annotations

import secrets

from pymongo.errors import DuplicateKeyError

from servicekit.ebpm import Params

async def params(db, settings) -> Params:
    """`settings`: the service's (`ebpm_min_cell`, `ebpm_key_secret`, `ebpm_key_secret_file`); kept per database."""
    if getattr(db, "_ebpm_params", None) is not None:
        return db._ebpm_params
    if settings.ebpm_key_secret_file:
        with open(settings.ebpm_key_secret_file, "rb") as f:
            secret = f.read().strip()
    elif settings.ebpm_key_secret:
        secret = settings.ebpm_key_secret.encode()
    else:
        try:
            await db.keys.insert_one({"_id": "ebpm", "value": secrets.token_bytes(32)})
        except DuplicateKeyError:
            pass
        secret = bytes((await db.keys.find_one({"_id": "ebpm"}))["value"])
    params = Params(secret=secret, min_cell=settings.ebpm_min_cell)
    try:
        db._ebpm_params = params
    except AttributeError:
        pass  # a database object that takes no attributes: computed again next time (one read)
    return params
