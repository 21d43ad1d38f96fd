"""Fixtures: one real Kafka and one real MongoDB-wire server per session; an isolated namespace per test."""
from __future__ import annotations

import os

import pytest

from tests.support import Infra, Namespace, start_infra


# Modules that stop or restart the shared Kafka and database, or bring up the whole platform on its fixed ports:
# `make test` runs them on their own, after the rest (which it spreads over several pytest-xdist workers).
SERIAL = ("test_platform.py", "test_reliability.py", "test_chaos.py")
_STARTED: list = []  # local infrastructure the xdist controller started for its workers (stopped at the end)


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: stops shared infrastructure; run without other tests (make test)")
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller has done the set-up below and exported the endpoints
    # Test modules mint tokens at import time, so the test signing keys must exist before collection.
    import os
    import subprocess

    from tests.support import LOCAL, local_env, start_infra
    subprocess.run([LOCAL / "gateway.sh", "keys"], env=local_env(), check=True, capture_output=True)
    unit_only = "not integration" in (config.option.markexpr or "")
    if getattr(config.option, "numprocesses", None) and not unit_only and not (os.environ.get("KAFKA_BOOTSTRAP")
                                                                               and os.environ.get("MONGO_URI")):
        # several workers: one infrastructure for all, started here once, and passed on through the environment
        inf = start_infra()
        os.environ["KAFKA_BOOTSTRAP"], os.environ["MONGO_URI"] = inf.kafka, inf.mongo
        _STARTED.extend(inf.stop)


def pytest_unconfigure(config):
    for stop in _STARTED:
        stop()


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if item.fspath.basename in SERIAL:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def infra() -> Infra:
    inf = start_infra()
    print(f"\ninfrastructure from {inf.how}: kafka={inf.kafka} mongo={inf.mongo}")
    yield inf
    for stop in inf.stop:
        stop()


@pytest.fixture
async def ns(infra) -> Namespace:
    n = Namespace()
    yield n
    try:
        await n.drop(infra)
    except Exception as e:  # cleaning up must never fail a test that passed
        print(f"namespace {n.id} not dropped: {e!r}")


@pytest.fixture
def services(infra, ns, tmp_path):
    """Starts services on demand: `services("identity", port=...)`; all stopped after the test."""
    from tests.support import ServiceProcess

    started: list[ServiceProcess] = []

    def start(name: str, **kw) -> ServiceProcess:
        p = ServiceProcess(name, infra, ns, tmp_path, **kw).start()
        started.append(p)
        start.by_name[name] = p
        return p

    start.by_name = {}  # the latest process of each service name, e.g. to read its spans
    yield start
    for p in started:
        p.stop()


@pytest.fixture
def gateway(infra, ns):
    """The real gateway (HAProxy and its deny-list sync, started by the project's script) in front of the test's
    services, reading the test's identity.events."""
    import subprocess

    from tests.support import GATEWAY_PORT, LOCAL, gateway_env
    env = gateway_env(infra, ns)
    subprocess.run([LOCAL / "gateway.sh", "start"], env=env, check=True)
    yield f"http://127.0.0.1:{GATEWAY_PORT}"
    subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)


@pytest.fixture(scope="session")
def s3():
    """A real S3-compatible server (deploy/local/s3.sh: gofakes3 built from the Go module proxy) for BLOB_STORE=s3,
    on TEST_S3_PORT or a free port; its environment for the recommend service: {S3_ENDPOINT, S3_ACCESS_KEY, ...}."""
    import subprocess

    from tests.support import LOCAL, free_port, worker_env
    port = int(os.environ.get("TEST_S3_PORT") or free_port())
    env = {**worker_env(), "S3_PORT": str(port)}
    subprocess.run([LOCAL / "s3.sh", "start"], env=env, check=True)
    yield {"BLOB_STORE": "s3", "S3_ENDPOINT": f"http://127.0.0.1:{port}", "S3_ACCESS_KEY": "test-access",
           "S3_SECRET_KEY": "test-secret", "S3_REGION": "us-east-1", "S3_BUCKET": "recommend-test"}
    subprocess.run([LOCAL / "s3.sh", "stop"], env=env, check=True)


@pytest.fixture
def smtp():
    """A real SMTP server on loopback: (sink with the accepted messages, port)."""
    from aiosmtpd.controller import Controller

    from tests.support import MailSink, free_port
    sink, port = MailSink(), free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    yield sink, port
    ctl.stop()
