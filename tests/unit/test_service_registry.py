"""The registry of services (services/registry.toml, servicekit.registry): the one place a service is registered.

Every generated deployment file is what the registry renders (drift), every service folder has an entry and every
entry a folder, and a ninth service is one entry: it reaches the scripts, the gateway and the manifests."""
from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from servicekit import registry
from servicekit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# today's local ports (8100 + offset): scripts, docs and bookmarks rely on them
TODAY = {"identity": 1, "experts": 2, "dispatch": 3, "budget": 4, "ratings": 5, "notifications": 6, "recommend": 7,
         "community": 8}
NINTH = """
[[service]]
name = "mentoring"
port = 9
asgi = "mentoring_service.app:create_app"
factory = true
probe = "/mentors"
"""


def test_every_committed_generated_file_is_what_the_registry_renders():
    stale = registry.stale()
    assert stale == [], f"run `python -m servicekit.registry render`: {stale}"


def test_every_folder_under_services_has_an_entry_and_every_entry_a_folder():
    folders = {p.name for p in (ROOT / "services").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders == set(registry.names())
    for s in registry.services():
        module, _, attr = s.asgi.partition(":")
        assert module.startswith(f"{s.package}."), s
        assert (ROOT / "services" / s.name / "src" / Path(*module.split("."))).with_suffix(".py").is_file(), s
        assert (ROOT / "services" / s.name / "pyproject.toml").is_file(), s


def test_every_service_is_a_dependency_of_the_workspace():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = set(project["project"]["dependencies"])
    sources = project["tool"]["uv"]["sources"]
    for name in registry.names():
        assert f"{name}-service" in deps and f"{name}-service" in sources, f"add {name}-service to pyproject.toml"


def test_the_ports_of_today_are_kept():
    assert {s.name: s.port for s in registry.services()} == TODAY
    assert registry.names() == list(TODAY)  # port order, as the scripts start them


def test_the_database_is_the_one_the_service_settings_derive():
    for s in registry.services():
        assert Settings(service_name=s.name, mongo_db="").database == s.db


@pytest.mark.parametrize("entry, says", [
    ('name = "identity"\nport = 9\nasgi = "a:b"\nprobe = "/x"', "a name appears twice"),
    ('name = "other"\nport = 1\nasgi = "a:b"\nprobe = "/x"', "ports must be distinct"),
    ('name = "other"\nport = 10\nasgi = "a:b"\nprobe = "/x"', "not 10"),
    ('name = "other"\nport = 9\nprobe = "/x"', "missing fields ['asgi']"),
    ('name = "other"\nport = 9\nasgi = "a:b"\nprobe = "/x"\nreplica = 3', "unknown fields ['replica']"),
    ('name = "Other-1"\nport = 9\nasgi = "a:b"\nprobe = "/x"', "lower-case letters only"),
    ('name = "other"\nport = 9\nasgi = "a:b"\nprobe = "/x"\nqueue = {maxconn = 0, timeout = "60s"}', "queue is"),
    ('name = "other"\nport = 9\nasgi = "a:b"\nprobe = "/x"\nqueue = {maxconn = 8, timeout = "soon"}', "queue is"),
])
def test_a_malformed_entry_is_refused_with_what_is_wrong(tmp_path, entry, says):
    path = tmp_path / "registry.toml"
    path.write_text((ROOT / "services" / "registry.toml").read_text() + f"\n[[service]]\n{entry}\n")
    with pytest.raises(registry.RegistryError, match=says.replace("[", r"\[").replace("]", r"\]")):
        registry.load(path)


def test_a_ninth_service_is_one_entry_rendered_everywhere(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text((ROOT / "services" / "registry.toml").read_text() + NINTH)
    svcs = registry.load(path)
    files = registry.rendered(ROOT, svcs)
    assert "deploy/k8s/mentoring.yaml" in files
    assert 'CMD ["uvicorn", "mentoring_service.app:create_app", "--factory", "--host"' \
        in files["services/mentoring/Dockerfile"]
    assert "  mentoring:\n    <<: *service\n" in files["deploy/compose.yaml"]
    assert "      mentoring: {condition: service_started}\n" in files["deploy/compose.yaml"]
    assert "  - mentoring.yaml\n" in files["deploy/k8s/kustomization.yaml"]
    assert '{name: smeportal/mentoring, newTag: "0.1.0"}' in files["deploy/k8s/kustomization.yaml"]
    for target, upstream in [("compose", "mentoring:8080"), ("k8s", "mentoring.smeportal.svc.cluster.local:8080")]:
        cfg = files[f"deploy/{target}/haproxy.cfg"]
        assert "|community|mentoring)(/|$)" in cfg
        assert "backend mentoring\n    http-request replace-path ^/api/mentoring/?(.*)$ /\\1\n" in cfg
        assert f"    server s1 {upstream}\n" in cfg
    local = registry.haproxy("local", {"SERVICE_PORT_BASE": "9100"}, svcs=svcs)
    assert "server s1 127.0.0.1:9109\n" in local and "server s1 127.0.0.1:9110\n" in local  # mentoring, the portal
    body = "".join(line for line in local.splitlines() if not line.startswith("#"))
    assert "@mentoring@" not in body and "@SERVICE_" not in body and "@web@" not in body

    env = {**os.environ, "SERVICE_REGISTRY": str(path), "VAR_DIR": str(tmp_path / "var")}
    out = subprocess.run(["bash", "-c", 'source deploy/local/lib.sh; load_registry; echo "${SERVICES[*]}";'
                          ' echo "${SERVICE_PORT_OFFSET[mentoring]} ${SERVICE_UVICORN_ARGS[mentoring]}"'],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [" ".join([*TODAY, "mentoring"]), "9 mentoring_service.app:create_app --factory"]


def test_identity_keeps_its_other_paths_without_the_api_prefix_header():
    """/.well-known/ reaches identity too: X-Forwarded-Prefix is set only on what came through /api/identity."""
    cfg = registry.haproxy("compose")
    assert ("backend identity\n    http-request set-header X-Forwarded-Prefix /api/identity if"
            " { path_beg /api/identity }\n") in cfg
    assert "backend experts\n    http-request replace-path ^/api/experts/?(.*)$ /\\1\n" \
           "    http-request set-header X-Forwarded-Prefix /api/experts\n" in cfg


def test_R_EXT_04_each_k8s_gateway_replica_enforces_its_share_of_the_tier_quotas():
    """HAProxy's stick tables are per replica: with N replicas behind the Service, each holds 1/N of every rate and
    quota, so a partner's tier holds in total; the replica count is the one deploy/k8s/gateway.yaml runs."""
    import re

    manifest = (registry.ROOT / "deploy" / "k8s" / "gateway.yaml").read_text()
    assert int(re.search(r"^\s+replicas:\s*(\d+)", manifest, re.M).group(1)) == registry.K8S_GATEWAY_REPLICAS
    k8s, compose = registry.TARGETS["k8s"], registry.TARGETS["compose"]
    for limit in registry.LIMITS:
        assert int(k8s[limit]) * registry.K8S_GATEWAY_REPLICAS >= int(compose[limit]) > int(k8s[limit]) * (
            registry.K8S_GATEWAY_REPLICAS - 1)
    assert registry.per_replica({**compose, "SANDBOX_QUOTA": "1001"}, 2)["SANDBOX_QUOTA"] == "501"


def test_R_POR_05_the_gateway_queues_requests_to_recommend_beyond_its_share_instead_of_passing_a_surge_on():
    """Every gateway config (local, compose, k8s) holds requests to recommend beyond `queue.maxconn` in flight in
    HAProxy's queue, long enough to wait out a deadline surge (well beyond the deadline's grace); the arrival stamp is
    set in the frontend, before any backend's queue. Services without a queue are passed every request at once."""
    from recommend_service import intake

    q = registry.get("recommend").queue
    assert q is not None and q.maxconn >= 1
    assert int(q.timeout.rstrip("s")) > 2 * intake.DEADLINE_GRACE_SECONDS + 60
    for target in ("local", "compose", "k8s"):
        cfg = registry.haproxy(target, {"SERVICE_PORT_BASE": "9100"} if target == "local" else None)
        backend = cfg.split("backend recommend\n", 1)[1].split("\nbackend ", 1)[0]
        assert f"    timeout queue {q.timeout}\n" in backend + "\n"
        assert backend.rstrip().splitlines()[-1].endswith(f" maxconn {q.maxconn}"), backend
        assert cfg.index("set-header X-Arrived-At") < cfg.index("backend recommend")
        assert "maxconn" not in cfg.split("backend dispatch\n", 1)[1].split("\nbackend ", 1)[0]
