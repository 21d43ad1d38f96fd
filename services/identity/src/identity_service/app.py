"""Wiring of the identity service."""
from identity_service import accounts, http, oidc
from identity_service.tokens import TokenIssuer
from servicekit.service import Service

svc = Service("identity", title="Identity", outbox=["businesses", "accounts", "clients"],
              produces=["identity.events"], honour_revocations=False)
svc.app.state.issuer = TokenIssuer.from_env()
svc.app.include_router(oidc.router)
svc.app.include_router(accounts.router)
svc.app.include_router(http.router)


async def _identity_subject_active(claims: dict) -> bool:
    """Identity is the authority: a revoked account, client or token id is refused at once."""
    db = svc.db
    if await db.accounts.find_one({"_id": claims["sub"], "status": "revoked"}, {"_id": 1}):
        return False
    if claims.get("client_id") and await db.clients.find_one({"_id": claims["client_id"], "status": "revoked"}, {"_id": 1}):
        return False
    return not (claims.get("jti") and await db.revoked_tokens.find_one({"_id": claims["jti"]}, {"_id": 1}))


svc.subject_active = _identity_subject_active


@svc.on_startup
async def _indexes() -> None:
    await svc.db.accounts.create_index("email", unique=True)
    await svc.db.clients.create_index("status")


app = svc.app
