"""R-EXT-01 developer onboarding through the real gateway: an organisation registers, creates an application and
reads its synthetic sandbox tenant at once; it applies for production against the published checklist; the agency
returns one application and approves another (a production client: private_key_jwt, PAR, DPoP, tier standard);
suspension revokes the application's clients and the gateway refuses their tokens within 2 s."""
from __future__ import annotations

import json
import time

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from identity_service.developers import CHECKLIST
from tests.integration.identity_support import OWNER, bearer, client_token, mail_env, prove_prime
from tests.support import eventually, service_port

DEV = bearer("dev-1", ["business"])
AGENCY = bearer("agency-1", ["agency"])


async def test_R_EXT_01_sandbox_at_once_review_against_the_checklist_and_suspension_everywhere(services, gateway):
    services("identity", port=service_port("identity"), **mail_env())
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()))
    async with httpx.AsyncClient(base_url=f"{gateway}/api/identity", timeout=15) as http:
        org = (await http.post("/developer/orgs", headers=DEV, json={"name": "会計クラウド株式会社",
                                                                      "contact_email": "dev@kaikei.example"})).json()
        r = await http.post(f"/developer/orgs/{org['org_id']}/apps", headers=DEV,
                            json={"name": "会計クラウド", "scopes": ["prefill:read", "prefill:financials"]})
        assert r.status_code == 201, r.text
        app = r.json()
        assert app["status"] == "sandbox" and app["sandbox_client"]["client_secret"] and app["sandbox_client"]["tier"] == "sandbox"
        assert (await http.post(f"/developer/orgs/{org['org_id']}/apps", headers=bearer("dev-2", ["business"]),
                                json={"name": "x"})).status_code == 404, "only the organisation's own people"

        # the sandbox works at once: synthetic businesses that consented, through the ordinary prefill API
        sandbox = await client_token(http, app["sandbox_client"])
        r = await http.get(f"/prefill/businesses/{app['sandbox_businesses'][0]}", headers={"authorization": f"Bearer {sandbox}"})
        assert r.status_code == 200 and r.json()["name"].startswith("サンドボックス") and r.json()["financials"]
        # ... and nothing real: no real business can consent to a sandbox client
        bid = await prove_prime(http, OWNER)
        assert (await http.post(f"/businesses/{bid}/consents", headers=OWNER,
                                json={"client_id": app["sandbox_client"]["client_id"]})).status_code == 422

        # applying needs every checklist item answered; the agency returns it, then approves the second application
        apply = {"jwks": {"keys": [jwk]}, "redirect_uris": ["https://kaikei.example/cb"],
                 "answers": {i: "yes: see our security whitepaper" for i in CHECKLIST}}
        short = {**apply, "answers": {i: "yes" for i in CHECKLIST[:-1]}}
        assert (await http.post(f"/developer/apps/{app['app_id']}/apply", headers=DEV, json=short)).status_code == 422
        assert (await http.post(f"/developer/apps/{app['app_id']}/apply", headers=DEV, json=apply)).json()["status"] == "in_review"
        assert (await http.post(f"/developer/apps/{app['app_id']}/review", headers=DEV,
                                json={"decision": "approve", "checked": CHECKLIST})).status_code == 403
        r = await http.post(f"/developer/apps/{app['app_id']}/review", headers=AGENCY,
                            json={"decision": "return", "notes": "EXT-SEC-05: state the retention period"})
        assert r.json()["status"] == "returned" and "EXT-SEC-05" in r.json()["notes"]
        assert (await http.post(f"/developer/apps/{app['app_id']}/apply", headers=DEV, json=apply)).status_code == 200
        r = await http.post(f"/developer/apps/{app['app_id']}/review", headers=AGENCY,
                            json={"decision": "approve", "checked": CHECKLIST[:-1]})
        assert r.status_code == 409 and "EXT-SEC-08" in r.json()["detail"]
        r = await http.post(f"/developer/apps/{app['app_id']}/review", headers=AGENCY,
                            json={"decision": "approve", "checked": CHECKLIST})
        assert r.json()["status"] == "approved" and r.json()["production_client_id"]
        prod = r.json()["production_client_id"]
        # the production client has no secret: a guessed one is refused
        r = await http.post("/token", auth=(prod, "guess"), data={"grant_type": "client_credentials"})
        assert r.status_code == 401

        # suspension: the application's clients are revoked and the gateway itself refuses their tokens within 2 s
        assert (await http.get("/prefill/businesses/" + app["sandbox_businesses"][1],
                               headers={"authorization": f"Bearer {sandbox}"})).status_code == 200
        start = time.monotonic()
        r = await http.post(f"/developer/apps/{app['app_id']}/review", headers=AGENCY,
                            json={"decision": "suspend", "notes": "leak reported"})
        assert r.json()["status"] == "suspended"

        async def refused_at_the_gateway():
            r = await http.get("/prefill/businesses/" + app["sandbox_businesses"][1],
                               headers={"authorization": f"Bearer {sandbox}"})
            return r.status_code == 401 and r.json()["detail"] == "this client has been revoked"
        await eventually(refused_at_the_gateway, timeout=2, interval=0.02)
        print(f"\nsuspension to the gateway's refusal: {(time.monotonic() - start) * 1000:.0f} ms")
        r = await http.post("/token", auth=(app["sandbox_client"]["client_id"], app["sandbox_client"]["client_secret"]),
                            data={"grant_type": "client_credentials"})
        assert r.status_code == 401
