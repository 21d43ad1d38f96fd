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


# identity checks its own records instead of the revoked-subjects read model other services keep
svc.subject_active = lambda claims: oidc.still_active(svc.db, claims)


@svc.on_startup
async def _indexes() -> None:
    await svc.db.accounts.create_index("email", unique=True)
    await svc.db.clients.create_index("status")


app = svc.app
