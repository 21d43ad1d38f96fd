"""R-POR-01: the portal offers its four functions — ① community and matching, ② support information and application
intake, ③ business collaboration (regional joint ordering), ④ financial data management and analysis — each as routes
of the service that owns it, in the OpenAPI documents the services publish (kept current by test_contracts)."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FUNCTIONS = {
    "① community and matching": [("community", "post", "/threads"), ("community", "post", "/postings"),
                                 ("community", "post", "/matches/{match_id}/consent"),
                                 ("recommend", "get", "/businesses/{business_id}/posting-recommendations")],
    "② support information and application intake": [
        ("recommend", "get", "/businesses/{business_id}/recommendations"), ("recommend", "get", "/cases"),
        ("recommend", "post", "/programmes/{programme_id}/applications"),
        ("recommend", "post", "/applications/{application_id}/submit"), ("identity", "get", "/directory/institutions")],
    "③ business collaboration": [("community", "post", "/joint-orders"),
                                 ("community", "post", "/joint-orders/{order_id}/applications"),
                                 ("community", "post", "/joint-orders/{order_id}/award")],
    "④ financial data management and analysis": [
        ("identity", "post", "/businesses/{business_id}/financials/import"),
        ("recommend", "get", "/businesses/{business_id}/benchmark"),
        ("recommend", "get", "/businesses/{business_id}/benchmark.pdf"),
        ("recommend", "get", "/businesses/{business_id}/diagnosis")],
}


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_R_POR_01_each_of_the_four_functions_is_offered_by_its_service(function):
    missing = []
    for service, method, path in FUNCTIONS[function]:
        paths = json.loads((ROOT / "services" / service / "openapi.json").read_text())["paths"]
        if method not in paths.get(path, {}):
            missing.append(f"{method.upper()} {path} ({service})")
    assert missing == [], f"{function}: missing {missing}"
