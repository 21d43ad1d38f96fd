"""Wiring of the identity service.

    uvicorn --factory identity_service.app:create_app
"""
from fastapi import FastAPI

from identity_service import (account_life, accounts, bindings, consents, consumers, developers, devportal, directory,
                              disclosures, fapi, federation, http, mfa, oidc, operator, orgs, partner_audit, webhooks)
from identity_service.mail import Mailer
from identity_service.settings import IdentitySettings
from identity_service.tokens import TokenIssuer
from servicekit import paging
from servicekit.service import Service
from servicekit.settings import Settings, settings_for


def create_app(settings: Settings | None = None) -> FastAPI:
    """The identity service's app, built from `settings` (default: the environment's, read now)."""
    settings = settings_for(IdentitySettings, "identity", settings)
    svc = Service("identity", title="Identity", outbox=["businesses", "accounts", "clients", "orgs", "platforms",
                                                       "consents", "delegations", "families", "revoked_tokens"],
                  produces=["identity.events", "notifications.commands"], honour_revocations=False, settings=settings)
    svc.app.state.issuer = TokenIssuer.from_settings(settings)
    svc.app.state.jwks = svc.app.state.issuer.keys  # identity verifies with its own key ring, not over HTTP (R-EXT-04)
    svc.app.state.mailer = Mailer.from_settings(settings)  # account mails (R-ID-10)
    svc.app.include_router(oidc.router)
    svc.app.include_router(fapi.router)
    svc.app.include_router(accounts.router)
    svc.app.include_router(account_life.router)
    svc.app.include_router(mfa.router)
    svc.app.include_router(http.router)
    svc.app.include_router(orgs.router)
    svc.app.include_router(directory.router)  # public (R-POR-07)
    svc.app.include_router(devportal.router)  # public: the developer portal's page of the APIs (R-EXT-04)
    svc.app.include_router(consents.router)
    svc.app.include_router(bindings.router)
    svc.app.include_router(disclosures.router)
    svc.app.include_router(operator.router)
    federation.install(svc.app, settings)
    svc.consume("dispatch.events", consumers.handlers(svc))
    for topic in operator.TRAIL_TOPICS:  # the operators' audit trail across services (R-OPS-02)
        svc.consume(topic, operator.trail_handlers(svc, topic))
    svc.app.include_router(webhooks.router)
    svc.app.include_router(partner_audit.router)
    svc.app.include_router(developers.router)
    webhooks.install(svc, lambda: svc.app.state.issuer)  # R-EXT-03: signed webhooks on consent changes

    # identity checks its own records instead of the deny list other services keep from its events
    svc.struck = lambda claims: bindings.struck(svc.db, claims)

    @svc.on_startup
    async def _indexes() -> None:
        await ensure_indexes(svc.db)

    return svc.app


async def ensure_indexes(db) -> None:
    """The indexes and keys identity's queries need (also run by the bulk-import benchmark on a fresh database)."""
    await db.accounts.create_index("email", unique=True)
    await db.clients.create_index("status")
    await db.platforms.create_index("member_ids")
    await directory.backfill(db)  # R-POR-07: entries of what was recorded before the directory
    await db.consents.create_index("business_id")
    await db.disclosures.create_index("business_id")
    await db.disclosures.create_index("org_id")
    await db.disclosures.create_index([("org_id", 1), ("key", -1)])  # the lists, paged (R-OPS-03)
    await db.disclosures.create_index([("business_id", 1), ("key", -1)])
    await paging.add_keys(db, "disclosures", "created_at")
    await db.federated_links.create_index("account_id")
    await db.businesses.create_index("prime_id")
    await db.businesses.create_index("member_ids")
    await db.businesses.create_index("invited_emails")
    await db.businesses.create_index([("owner", 1), ("status", 1)])  # a registration awaiting proof, by its owner
    await db.delegations.create_index("business_id")
    await db.delegations.create_index("org_id")
    await db.refresh_tokens.create_index("family")
    await db.letters.create_index("status")
    await db.letters.create_index([("status", 1), ("key", 1)])
    await paging.add_keys(db, "letters", "created_at")
    await db.audit.create_index([("key", 1), ("at", -1)])
    await operator.ensure_indexes(db)
    await db.audit.create_index([("actor", 1), ("at", -1)])  # a client's export of its own calls (R-EXT-04)
    await db.webhook_deliveries.create_index([("status", 1), ("next_at", 1)])
    await db.webhook_deliveries.create_index([("client_id", 1), ("created_at", -1)])
    for tokens in ("verification_tokens", "reset_tokens", "login_tickets"):  # R-ID-10
        await db[tokens].create_index("account_id")
