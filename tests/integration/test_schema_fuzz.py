"""A bounded schemathesis run through the real gateway (HAProxy) against every service's OpenAPI document, with the
tokens of several roles: no input, valid or not, may give a 5xx (issue 13, acceptance).

All seven services run as processes behind the gateway, on real Kafka and MongoDB. Two phases, as schemathesis runs
them, both from the documents the running services serve:
1. coverage: schemathesis's deterministic boundary cases of every operation (each parameter and body field at and
   beyond its limits, missing, of the wrong type; positive and negative). The first case of an operation goes out with
   every role's token; the others with one role each, in turn, so every role reaches every operation.
2. fuzzing: passes over all operations (one pass covers every operation before the next starts; the services'
   operations interleaved, so a cut leaves none out) with a few random cases per operation, positive and negative in
   turn, each case sent with every role's token, until the passes are done or the time budget (counted from the
   start of the coverage phase) is spent.
Cases are sent by SENDERS threads while the next ones are generated, so the services also see concurrent calls.
It prints per service the operations, the calls made and the 5xx count; any 5xx fails the test.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.integration.stack import start_all, stop_all
from tests.support import GATEWAY_PORT, LOCAL, SERVICES, Namespace, token, worker_env

# passes over every operation: (generation mode, examples per operation); then stop at the budget
# (FUZZ_EXAMPLES and FUZZ_BUDGET_SECONDS scale a longer run by hand)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
PASSES = [("positive", EXAMPLES), ("negative", EXAMPLES), ("positive", EXAMPLES), ("negative", EXAMPLES)]
BUDGET_SECONDS = float(os.environ.get("FUZZ_BUDGET_SECONDS", "150"))
SENDERS = int(os.environ.get("FUZZ_SENDERS", "8"))  # calls in flight at once (the cases are generated in one thread)
TTL = 3600
BIZ, ORG, PLATFORM = "biz-fuzz", "org-fuzz", "pf-fuzz"
RIGHTS = ["joint_activities", "manage_budget", "recommend_experts", "request_dispatch"]


def _bearer(sub: str, roles: list[str], **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=roles, ttl=TTL, jti=uuid.uuid4().hex, **claims)}"}


def role_headers() -> dict[str, dict]:
    """The callers: business prime, institution staff with a delegation, expert, agency, operator (portal tokens)."""
    exp = int(time.time()) + TTL
    return {
        "business prime": _bearer("acct-fuzz-prime", ["business"], biz=[{"id": BIZ, "role": "prime"}]),
        "institution with delegation": _bearer(
            "acct-fuzz-staff", ["institution"],
            orgs=[{"org_id": ORG, "platform_id": PLATFORM, "member_role": "representative", "rights": RIGHTS}],
            dlg=[{"id": "dlg-fuzz", "business_id": BIZ, "org_id": ORG, "exp": exp,
                  "scopes": ["dispatch:read", "dispatch:request", "profile:read", "profile:write"]}]),
        "expert": _bearer("acct-fuzz-expert", ["expert"]),
        "agency": _bearer("acct-fuzz-agency", ["agency"]),
        "operator": _bearer("acct-fuzz-operator", ["operator"]),
    }


@pytest.fixture(scope="module")
def gateway_stack(infra, tmp_path_factory):
    """The seven services on the ports the gateway routes to, and the gateway with rate limits high enough that the
    run measures the services, not the limiter (its limits have their own test)."""
    ns = Namespace()
    procs = start_all(infra, ns, tmp_path_factory.mktemp("fuzz"), gateway_ports=True)
    env = {**worker_env(), "GATEWAY_RATE_LIMIT": "100000", "GATEWAY_CLIENT_RATE_LIMIT": "100000"}
    try:
        subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)  # a running one keeps its own limits
        subprocess.run([LOCAL / "gateway.sh", "start"], env=env, check=True)
        yield f"http://127.0.0.1:{GATEWAY_PORT}", procs
    finally:
        subprocess.run([LOCAL / "gateway.sh", "stop"], env=env)
        stop_all(procs, infra, ns)


def _operations(http: requests.Session, gateway: str, service: str) -> list:
    import schemathesis

    spec = http.get(f"{gateway}/api/{service}/openapi.json", timeout=10)
    assert spec.status_code == 200, spec.text
    doc = spec.json()
    # the documents name who may call each operation (`security`, for partners reading them); this test sends every
    # role's token itself, so schemathesis is not to generate credentials of its own
    doc.get("components", {}).pop("securitySchemes", None)
    for path_ops in doc["paths"].values():
        for op in path_ops.values():
            if isinstance(op, dict):
                op.pop("security", None)
    ops = []
    for result in schemathesis.openapi.from_dict(doc).get_all_operations():
        ops.append(result.ok())  # an operation schemathesis cannot read is a broken document: fail here
    return ops


@pytest.mark.timeout(BUDGET_SECONDS + 450)  # the coverage phase always runs whole (83 s alone, 160 s in a busy CI)
def test_schemathesis_through_the_gateway_gives_no_5xx_for_any_role(gateway_stack):
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from schemathesis import GenerationMode

    gateway, _ = gateway_stack
    headers = role_headers()
    http = requests.Session()
    operations = {s: _operations(http, gateway, s) for s in SERVICES}
    calls, errors, skipped = Counter(), Counter(), Counter()
    failures: dict[tuple, str] = {}  # (service, method, path, role, status) -> one example
    started = time.monotonic()
    deadline = started + BUDGET_SECONDS
    passes_done = 0

    local, lock, room = threading.local(), threading.Lock(), threading.BoundedSemaphore(4 * SENDERS)
    pool, pending = ThreadPoolExecutor(SENDERS), []

    def call(service: str, op, case, to: list[str]) -> None:
        try:
            for role in to:
                auth = headers[role]
                if not hasattr(local, "http"):
                    local.http = requests.Session()
                try:
                    r = case.call(base_url=f"{gateway}/api/{service}", session=local.http, headers=auth, timeout=15)
                except requests.RequestException as e:  # the gateway or a service did not answer at all
                    status, text = 599, repr(e)
                else:
                    status, text = r.status_code, r.text
                with lock:
                    calls[service] += 1
                    if status >= 500:
                        errors[service] += 1
                        failures.setdefault((service, op.method.upper(), op.path, role, status),
                                            f"{case.as_curl_command(headers=auth)[:600]}\n  -> {text[:300]}")
        finally:
            room.release()

    def send(service: str, op, case, to: list[str]) -> None:
        """Sends a case with each of these roles' tokens, on one of SENDERS threads (the cases are generated here
        meanwhile); at most 4 × SENDERS cases wait."""
        room.acquire()
        pending.append(pool.submit(call, service, op, case, to))

    def sent() -> None:
        for f in pending:
            f.result()
        pending.clear()

    def run(service: str, op, mode: str, examples: int, pass_no: int) -> None:
        @seed(zlib.crc32(f"{op.label}|{pass_no}".encode()))
        @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        def check(case):
            send(service, op, case, roles)

        try:
            check()
        except Exception as e:  # schemathesis found no case of this mode (e.g. nothing to break in a negative case)
            skipped[(service, mode)] += 1
            if not _unsatisfiable(e):
                raise

    # 1. coverage phase: deterministic boundary cases
    from schemathesis.generation.drivers import CoverageGenerator
    from schemathesis.generation.feedback import FeedbackSources
    from schemathesis.generation.overrides import Override

    roles = list(headers)
    for service in SERVICES:
        for op in operations[service]:
            generator = CoverageGenerator(
                operation=op, generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                generation_config=op.schema.config.generation_for(operation=op, phase="coverage"),
                auth_storage=None, override=Override(), feedback=FeedbackSources())
            for i, case in enumerate(generator):
                send(service, op, case, roles if i == 0 else [roles[i % len(roles)]])
    sent()
    coverage_calls = sum(calls.values())
    coverage_seconds = time.monotonic() - started

    # 2. fuzzing phase: random cases in passes, until the budget is spent
    for pass_no, (mode, examples) in enumerate(PASSES):
        if time.monotonic() > deadline:
            break
        # interleave the services so that a budget cut leaves no service uncovered
        queue = [(s, op) for i in range(max(map(len, operations.values())))
                 for s in SERVICES if i < len(operations[s]) for op in [operations[s][i]]]
        for service, op in queue:
            if time.monotonic() > deadline:
                break
            run(service, op, mode, examples, pass_no)
        else:
            passes_done += 1
        sent()
    pool.shutdown()

    elapsed = time.monotonic() - started
    print(f"\nschemathesis through the gateway, roles: {', '.join(headers)}")
    print(f"coverage phase: {coverage_calls} calls in {coverage_seconds:.0f}s; fuzzing phase: {passes_done} of "
          f"{len(PASSES)} passes completed; {elapsed:.0f}s in all (budget {BUDGET_SECONDS:.0f}s)")
    print(f"{'service':<14}{'operations':>11}{'calls':>8}{'5xx':>6}")
    for s in SERVICES:
        print(f"{s:<14}{len(operations[s]):>11}{calls[s]:>8}{errors[s]:>6}")
    if skipped:
        print("operations without cases of a mode (schemathesis could generate none):",
              dict(sorted(Counter({f"{s}/{m}": n for (s, m), n in skipped.items()}).items())))
    for s in SERVICES:
        assert calls[s] >= len(operations[s]) * len(headers), f"{s}: not every operation was called"
    assert not failures, "5xx answers:\n" + "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))


def _unsatisfiable(e: Exception) -> bool:
    from hypothesis.errors import Unsatisfiable

    return isinstance(e, Unsatisfiable)
