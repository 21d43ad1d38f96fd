"""The README's run command: the whole platform up through the project's scripts, healthy, idempotent, stoppable."""
from __future__ import annotations

import json
import subprocess

import httpx

from tests.support import GATEWAY_PORT, LOCAL, SERVICES, TEST_VAR, local_env


def _platform(cmd: str) -> subprocess.CompletedProcess:
    # VIEWER=0: the trace viewer (Jaeger, ~10 min to build on a fresh machine) is not what this test is about;
    # tests/integration/test_observability.py receives the OTLP export itself.
    return subprocess.run(["bash", LOCAL / "platform.sh", cmd], env={**local_env(), "VIEWER": "0"},
                          capture_output=True, text=True, timeout=600)


def _pids() -> dict:
    return {p.name: p.read_text() for p in (TEST_VAR / "run").glob("*.pid")}


def test_platform_up_is_healthy_idempotent_and_stops(infra):
    try:
        up = _platform("up")
        assert up.returncode == 0, up.stderr[-3000:]
        assert f"Gateway: http://127.0.0.1:{GATEWAY_PORT}" in up.stdout
        for name in SERVICES:
            r = httpx.get(f"http://127.0.0.1:{GATEWAY_PORT}/api/{name}/healthz", timeout=10)
            assert r.status_code == 200 and r.json()["service"] == name
        r = httpx.get(f"http://127.0.0.1:{GATEWAY_PORT}/api/recommend/businesses/corp-7000012050002",
                      headers={"authorization": "Bearer " + subprocess.run(
                          [str(LOCAL.parents[1] / ".venv/bin/python"), LOCAL / "demo.py", "--token-only"],
                          env=local_env(), capture_output=True, text=True, check=True).stdout.strip()}, timeout=10)
        assert r.status_code in (200, 404)  # demo data travels through Kafka; it may still be on its way
        # the demo programme (platform, frame, approved expert) went in through the gateway
        demo = json.loads((TEST_VAR / "mongo" / "demo-programme.json").read_text())
        assert demo["frame_id"].startswith("frame-") and demo["expert_id"]
        # the portal: its pages at / and the OAuth client demo.py registered for it
        portal = httpx.get(f"http://127.0.0.1:{GATEWAY_PORT}/", timeout=10)
        assert portal.status_code == 200 and portal.headers["content-type"].startswith("text/html")
        assert httpx.get(f"http://127.0.0.1:{GATEWAY_PORT}/config.json", timeout=10).json()["client_id"].startswith("cl-")

        before = _pids()
        again = _platform("up")
        assert again.returncode == 0 and "already up; nothing changed" in again.stdout
        assert _pids() == before
    finally:
        down = _platform("down")
    assert down.returncode == 0
    for name in SERVICES:
        try:
            httpx.get(f"http://127.0.0.1:{GATEWAY_PORT}/api/{name}/healthz", timeout=2)
            raise AssertionError("gateway still answers after down")
        except httpx.TransportError:
            pass
    # `down` also stopped this session's Kafka and MongoDB: bring them back for later tests.
    for script in ("kafka.sh", "mongo.sh"):
        subprocess.run([LOCAL / script, "start"], env=local_env(), check=True)
