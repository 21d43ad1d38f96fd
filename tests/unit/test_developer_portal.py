"""R-EXT-04: the developer portal lists the APIs a partner may call, from the merged documents `servicekit.apidocs`
writes (every service under the gateway's /api/<service>), each with the scope its token needs."""
import json
import re

from identity_service import devportal
from servicekit import apidocs


def test_R_EXT_04_the_merged_document_has_every_service_under_the_gateway_path():
    doc = devportal.document("openapi")
    services = {p.split("/")[2] for p in doc["paths"]}
    assert services == set(apidocs.SERVICES)
    assert not any(p.endswith(("/healthz", "/metrics")) for p in doc["paths"])  # not routed by the gateway
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs <= set(doc["components"]["schemas"]), "every reference resolves after the services' names prefix it"


def test_R_EXT_04_the_page_lists_each_partner_operation_with_its_scope_and_nothing_portal_only():
    ops = devportal.partner_operations(devportal.document("openapi"))
    listed = {(o["method"], o["path"]): o["scopes"] for o in ops}
    assert listed[("GET", "/api/identity/prefill/{corporate_number}")] == ["prefill:read"]
    assert listed[("GET", "/api/identity/clients/me/audit")] == ["audit:read"]
    assert ("GET", "/api/identity/operator/audit") not in listed  # staff only: the portal's tokens
    page = devportal.page()
    for o in ops:
        assert o["path"] in page
    assert "consentChanged" in page and "urn:smeportal:" in page


def test_R_EXT_04_the_merged_asyncapi_keeps_each_services_channels_apart_and_its_references_resolve():
    doc = devportal.document("asyncapi")
    assert len({k.split(".")[0] for k in doc["channels"]}) >= 7  # every service that publishes or consumes
    text = json.dumps(doc)
    for section, name in re.findall(r'"#/(channels|operations|components/messages|components/schemas)/([^"/]+)', text):
        where = doc
        for part in section.split("/"):
            where = where[part]
        assert name in where, f"{section}/{name}"
