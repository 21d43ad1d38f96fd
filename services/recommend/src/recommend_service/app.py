"""Wiring of the recommend service."""
from recommend_service import domain, store
from recommend_service.consumers import community_handlers, identity_handlers, own_handlers
from recommend_service.http import router
from servicekit.service import Service

svc = Service("recommend", title="Recommendations", outbox=["business_profiles", "programmes"],
              produces=["recommend.events", "notifications.commands"])
svc.consume("identity.events", identity_handlers(svc))
svc.consume("recommend.events", own_handlers(svc))
svc.consume("community.events", community_handlers(svc))  # needs and offers, recommended like programmes
svc.app.include_router(router)
svc.app.state.cases = domain.load_cases()  # R-POR-08: the case catalogue ships with the service


@svc.on_startup
async def _seed() -> None:
    await store.seed_catalogue(svc.db, domain.load_catalogue())


app = svc.app
