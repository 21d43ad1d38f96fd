"""All the services (services/registry.toml) as processes on one namespace, started side by side (each start waits on its /readyz)."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support import SERVICES, Infra, Namespace, ServiceProcess, service_port, shared_mailbox


def mail_settings() -> dict:
    """identity's account mails and notifications' e-mails go to the tests' SMTP server."""
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(shared_mailbox()[1]), "SMTP_BACKOFF_SECONDS": "0.2"}


def start_all(infra: Infra, ns: Namespace, tmp: Path, *, gateway_ports: bool,
              identity_env: dict | None = None) -> dict[str, ServiceProcess]:
    """Starts every service; `gateway_ports`: on the ports the test gateway routes to, else on free ports."""
    procs = {}
    for name in SERVICES:
        extra = {**(mail_settings() if name in ("identity", "notifications") else {}),
                 **((identity_env or {}) if name == "identity" else {})}
        procs[name] = ServiceProcess(name, infra, ns, tmp, port=service_port(name) if gateway_ports else None, **extra)
    identity = procs["identity"]
    identity.env.setdefault("IDENTITY_PUBLIC_URL", identity.url)  # where its mails link to
    try:
        with ThreadPoolExecutor(len(procs)) as pool:
            for f in [pool.submit(p.start, 120) for p in procs.values()]:
                f.result()
    except BaseException:
        stop_all(procs, infra, ns)
        raise
    return procs


def stop_all(procs: dict[str, ServiceProcess], infra: Infra, ns: Namespace) -> None:
    for p in procs.values():
        p.stop()
    try:  # in a thread of its own: the caller may be inside a running event loop
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, ns.drop(infra)).result()
    except Exception as e:  # cleaning up must never fail a test that passed
        print(f"namespace {ns.id} not dropped: {e!r}")
