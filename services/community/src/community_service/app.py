"""Wiring of the community service: community threads with moderation (R-POR-02) and matching (R-POR-03)."""
from community_service.matching import router as matching_router
from community_service.threads import router as threads_router
from servicekit.service import Service

svc = Service("community", title="Community and matching",
              outbox=["threads", "posts", "reports", "postings", "matches"],
              produces=["community.events", "notifications.commands"])
svc.app.include_router(threads_router)
svc.app.include_router(matching_router)

app = svc.app
