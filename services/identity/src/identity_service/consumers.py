"""Kafka handlers of the identity service: forced exit requested by the dispatch service (R-DSP-13 → R-ID-06)."""
from __future__ import annotations

from contracts import Envelope
from contracts.events.dispatch import FraudConfirmed
from identity_service import accounts


def handlers(svc):
    async def on_fraud_confirmed(env: Envelope, e: FraudConfirmed) -> None:
        # idempotent: an account already revoked matches nothing, so a redelivery emits no second AccountRevoked
        for account_id in e.account_ids:
            await accounts.revoke(svc, account_id, f"fraud confirmed on dispatch {e.dispatch_id}: {e.reason}",
                                  actor=env.actor or env.producer, cause=env)

    return {FraudConfirmed: on_fraud_confirmed}
