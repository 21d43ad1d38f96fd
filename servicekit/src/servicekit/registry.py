"""The registry of services: `services/registry.toml` read into dataclasses, and what is derived from it.

    python -m servicekit.registry names            # identity experts … (port order)
    python -m servicekit.registry ports [BASE]     # `name port` lines (BASE: SERVICE_PORT_BASE, default 8100)
    python -m servicekit.registry bash             # bash declarations for `eval` (deploy/local/*.sh)
    python -m servicekit.registry haproxy TARGET [KEY=VALUE…]   # the gateway config (local|compose|k8s) on stdout
    python -m servicekit.registry render           # rewrite the generated deployment files (below)
    python -m servicekit.registry check            # exit 1 and name them when a committed file differs

Generated from the registry (`render`): the gateway configs deploy/compose/haproxy.cfg and deploy/k8s/haproxy.cfg
(from deploy/local/haproxy.cfg.tmpl), deploy/k8s/<service>.yaml, deploy/k8s/hpa.yaml, services/<service>/Dockerfile,
and the marked regions (`# >>> registry:…` … `# <<< registry:…`) of deploy/compose.yaml and
deploy/k8s/kustomization.yaml, whose other lines are kept as written.

Standard library only, so the local scripts can run this file directly with any Python >= 3.11, and quickly.
"""
from __future__ import annotations

import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
WEB_PORT_OFFSET = 10  # the portal's static server (deploy/local/web.sh): SERVICE_PORT_BASE + 10
DEFAULT_PORT_BASE = 8100
_FIELDS = {"name", "port", "asgi", "factory", "probe", "gateway", "other_paths", "database", "replicas", "hpa",
           "dockerfile_extra", "queue"}


@dataclass(frozen=True)
class Hpa:
    min: int
    max: int
    cpu: int  # target average CPU utilisation, per cent


@dataclass(frozen=True)
class Queue:
    """The gateway holds requests beyond `maxconn` in flight to the service in its own queue, up to `timeout`
    (HAProxy duration, e.g. "180s"), instead of handing them all to the service (R-POR-05: a surge degrades by
    queueing; the arrival was stamped before the queue)."""
    maxconn: int
    timeout: str


@dataclass(frozen=True)
class Service:
    name: str
    port: int  # offset from SERVICE_PORT_BASE
    asgi: str  # module:attribute uvicorn serves
    probe: str  # an authenticated GET route of the service
    factory: bool = False  # asgi names a factory (uvicorn --factory)
    gateway: bool = True  # routed by the gateway as /api/<name>
    other_paths: tuple[str, ...] = ()
    database: str = ""
    replicas: int = 2
    hpa: Hpa | None = None
    dockerfile_extra: str = ""
    queue: Queue | None = None  # the gateway's queue in front of the service; None: every request passed on at once

    @property
    def prefix(self) -> str:
        return f"/api/{self.name}"

    @property
    def package(self) -> str:
        return f"{self.name}_service"

    @property
    def db(self) -> str:
        """The service's MongoDB database (servicekit.settings derives the same default)."""
        return self.database or f"smeportal_{self.name}"

    @property
    def uvicorn_args(self) -> list[str]:
        """What follows `uvicorn`: the application, and --factory when it is one."""
        return [self.asgi, *(["--factory"] if self.factory else [])]

    def local_port(self, base: int = DEFAULT_PORT_BASE) -> int:
        return base + self.port


class RegistryError(ValueError):
    pass


def registry_path() -> Path:
    return Path(os.environ.get("SERVICE_REGISTRY") or ROOT / "services" / "registry.toml")


def load(path: Path | None = None) -> list[Service]:
    """The services in port order; a malformed entry is refused with what is wrong."""
    path = path or registry_path()
    with open(path, "rb") as f:
        entries = tomllib.load(f).get("service", [])
    services = []
    for i, e in enumerate(entries):
        where = f"{path}: service #{i + 1} ({e.get('name', '?')})"
        unknown = set(e) - _FIELDS
        missing = {"name", "port", "asgi", "probe"} - set(e)
        if unknown or missing:
            raise RegistryError(f"{where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
        if not re.fullmatch(r"[a-z]+", e["name"]):  # the gateway's path rules take /api/[a-z]+/
            raise RegistryError(f"{where}: a name is lower-case letters only")
        if not e["probe"].startswith("/"):
            raise RegistryError(f"{where}: probe is a path starting with /")
        hpa = Hpa(**e["hpa"]) if "hpa" in e else None
        queue = Queue(**e["queue"]) if "queue" in e else None
        if queue and (queue.maxconn < 1 or not re.fullmatch(r"\d+(ms|s|m)", queue.timeout)):
            raise RegistryError(f"{where}: queue is {{maxconn = N >= 1, timeout = \"<n>s\"}}")
        services.append(Service(**{**e, "other_paths": tuple(e.get("other_paths", ())), "hpa": hpa, "queue": queue}))
    names = [s.name for s in services]
    ports = [s.port for s in services]
    if len(set(names)) != len(names):
        raise RegistryError(f"{path}: a name appears twice: {names}")
    if len(set(ports)) != len(ports) or WEB_PORT_OFFSET in ports or min(ports, default=1) < 1:
        raise RegistryError(f"{path}: ports must be distinct, >= 1 and not {WEB_PORT_OFFSET} (the portal): {ports}")
    return sorted(services, key=lambda s: s.port)


_cache: dict[Path, list[Service]] = {}


def services() -> list[Service]:
    path = registry_path()
    if path not in _cache:
        _cache[path] = load(path)
    return _cache[path]


def names() -> list[str]:
    return [s.name for s in services()]


def get(name: str) -> Service:
    for s in services():
        if s.name == name:
            return s
    raise KeyError(f"no service {name!r} in {registry_path()}")


# ---------------------------------------------------------------------------------------------------------- bash


def _q(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def bash(svcs: list[Service]) -> str:
    """Declarations the local scripts `eval`: SERVICES (port order), SERVICE_PORT_OFFSET, SERVICE_UVICORN_ARGS
    (space-separated, no spaces inside an argument) and GATEWAY_SERVICES."""
    lines = [f"SERVICES=({' '.join(s.name for s in svcs)})",
             f"GATEWAY_SERVICES=({' '.join(s.name for s in svcs if s.gateway)})",
             "declare -gA SERVICE_PORT_OFFSET=(" + " ".join(f"[{s.name}]={s.port}" for s in svcs) + ")",
             "declare -gA SERVICE_UVICORN_ARGS=(" + " ".join(f"[{s.name}]={_q(' '.join(s.uvicorn_args))}"
                                                            for s in svcs) + ")"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- gateway

HAPROXY_TEMPLATE = ROOT / "deploy" / "local" / "haproxy.cfg.tmpl"
DOCKER_DNS = "nameserver docker 127.0.0.11:53"
# what gen-cfg fixed for the checked-in configs: the services' defaults there (they set no OIDC_ISSUER / JWT_ISSUER)
DEPLOYED = {"BIND": ":8080", "JWT_KEY": "/keys/jwt-public.pem", "RESOLVERS": "resolvers dns",
            "DENY_MAP": "/run/gateway/deny.map", "ADMIN_SOCKET": "/run/gateway/admin.sock",
            "RATE_LIMIT": "50", "CLIENT_RATE_LIMIT": "1000", "JWT_ISSUER": "http://127.0.0.1:8080",
            "SANDBOX_RATE": "5", "SANDBOX_QUOTA": "1000", "STANDARD_RATE": "50", "STANDARD_QUOTA": "100000",
            "PREMIUM_RATE": "200", "PREMIUM_QUOTA": "1000000", "JWT_KID_KEYS": ""}
# Each gateway replica counts in its own stick tables (HAProxy's peers copy entries, they do not add them up), so
# behind a load balancer that spreads requests evenly a replica enforces its share of every rate and quota: a
# partner's tier holds across the replicas within the balancer's imbalance. deploy/k8s/gateway.yaml runs this many
# (a unit test keeps the two equal); compose runs one.
K8S_GATEWAY_REPLICAS = 2
LIMITS = ("RATE_LIMIT", "CLIENT_RATE_LIMIT", "SANDBOX_RATE", "SANDBOX_QUOTA", "STANDARD_RATE", "STANDARD_QUOTA",
          "PREMIUM_RATE", "PREMIUM_QUOTA")


def per_replica(values: dict, replicas: int) -> dict:
    """The limits one of `replicas` gateway replicas enforces: its share, rounded up."""
    return {**values, **{k: str(-(-int(values[k]) // replicas)) for k in LIMITS}}


TARGETS = {
    "compose": {**DEPLOYED, "NAMESERVER": DOCKER_DNS},
    "k8s": per_replica({**DEPLOYED, "NAMESERVER": "parse-resolv-conf"}, K8S_GATEWAY_REPLICAS),
}


def _upstream(target: str, name: str, port: int, values: dict) -> str:
    if target == "local":
        base = int(values.get("SERVICE_PORT_BASE") or DEFAULT_PORT_BASE)
        if name == "web":
            return f"127.0.0.1:{values.get('WEB_PORT') or base + WEB_PORT_OFFSET}"
        return f"127.0.0.1:{base + port}"
    if target == "compose":
        return f"{name}:8080"
    return f"{name}.smeportal.svc.cluster.local:8080"  # HAProxy's resolvers ignore DNS search domains


def _backend(s: Service, upstream: str) -> str:
    strip = f"    http-request replace-path ^{s.prefix}/?(.*)$ /\\1\n"
    if s.other_paths:  # requests of other paths reach it too: only /api/<name> ones came through the prefix
        head = f"    http-request set-header X-Forwarded-Prefix {s.prefix} if {{ path_beg {s.prefix} }}\n" + strip
    else:
        head = strip + f"    http-request set-header X-Forwarded-Prefix {s.prefix}\n"
    if s.queue:  # at most maxconn requests in flight to the service; the others wait here, up to the timeout
        return (f"backend {s.name}\n    timeout queue {s.queue.timeout}\n{head}"
                f"    server s1 {upstream} maxconn {s.queue.maxconn}\n")
    return f"backend {s.name}\n{head}    server s1 {upstream}\n"


def _kid_lines(kid_dir: str) -> str:
    """A jwt_verify line per <kid>.pem in kid_dir (the keys of identity's JWKS kept by the deny-list sync)."""
    if not kid_dir or not Path(kid_dir).is_dir():
        return ""
    out = ""
    for f in sorted(Path(kid_dir).glob("*.pem")):
        out += (f'http-request set-var(txn.jwt_sig) var(txn.bearer),jwt_verify("RS256","{f}") '
                f"if {{ var(txn.jwt_kid) -m str -- {f.stem} }}\n    ")
    return out


def haproxy(target: str, values: dict | None = None, svcs: list[Service] | None = None) -> str:
    """The gateway config for `target` (local, compose, k8s) from deploy/local/haproxy.cfg.tmpl: its @KEY@
    placeholders filled from `values` (the target's fixed ones for compose and k8s), the services' routes and
    backends from the registry. Comment lines (a `#` in the first column) keep their placeholders."""
    svcs = svcs if svcs is not None else services()
    values = {**TARGETS.get(target, {}), **(values or {})}
    if "KID_KEYS_DIR" in values:
        values["JWT_KID_KEYS"] = _kid_lines(values.pop("KID_KEYS_DIR"))
    routed = [s for s in svcs if s.gateway]
    values["SERVICE_NAMES"] = "|".join(s.name for s in routed)
    for name, port in [*((s.name, s.port) for s in routed), ("web", WEB_PORT_OFFSET)]:
        values[name] = _upstream(target, name, port, values)
    backends = "".join(_backend(s, values[s.name]) for s in routed)
    out = []
    for line in HAPROXY_TEMPLATE.read_text().splitlines(keepends=True):
        if line.startswith("#"):
            out.append(line)
        elif line.strip() == "@SERVICE_BACKENDS@":
            out.append(backends)
        else:
            out.append(re.sub(r"@([A-Za-z_]+)@", lambda m: str(values.get(m[1], m[0])), line))
    return "".join(out)


# --------------------------------------------------------------------------------------------- deployment files

GENERATED = "generated from services/registry.toml by `python -m servicekit.registry render`; edit the registry"

K8S_SERVICE = """\
# The {name} service: Deployment (non-root, read-only root fs, probes) and its ClusterIP Service; reached only via the gateway.
# ({generated})
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app.kubernetes.io/name: {name}, app.kubernetes.io/part-of: smeportal}}
spec:
  {replicas}
  selector:
    matchLabels: {{app.kubernetes.io/name: {name}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: {name}, app.kubernetes.io/part-of: smeportal, smeportal/tier: service}}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: {name}
          image: smeportal/{name}:latest  # pinned in kustomization.yaml (images)
          ports: [{{name: http, containerPort: 8080}}]
          envFrom: [{{configMapRef: {{name: smeportal-config}}}}]
          env: [{{name: SERVICE_NAME, value: {name}}}]
          readinessProbe:
            httpGet: {{path: /readyz, port: http}}
            periodSeconds: 5
            failureThreshold: 3
          livenessProbe:
            httpGet: {{path: /healthz, port: http}}
            initialDelaySeconds: 15
            periodSeconds: 10
            failureThreshold: 3
          resources:
            requests: {{cpu: 100m, memory: 192Mi}}
            limits: {{cpu: "1", memory: 512Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
          volumeMounts:
            - {{name: tmp, mountPath: /tmp}}
            - {{name: jwt, mountPath: /keys, readOnly: true}}
      volumes:
        - {{name: tmp, emptyDir: {{sizeLimit: 64Mi}}}}
        - {{name: jwt, configMap: {{name: jwt-public-key}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels: {{app.kubernetes.io/name: {name}, app.kubernetes.io/part-of: smeportal}}
spec:
  selector: {{app.kubernetes.io/name: {name}}}
  ports: [{{name: http, port: 8080, targetPort: http}}]
"""

K8S_HPA = """\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: {min}
  maxReplicas: {max}
  metrics:
    - type: Resource
      resource: {{name: cpu, target: {{type: Utilization, averageUtilization: {cpu}}}}}
"""

DOCKERFILE = """\
# Container image of the {name} service; build context = repo root (docker build -f services/{name}/Dockerfile .).
# ({generated})
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \\
    UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1
{extra}RUN pip install --no-cache-dir uv==0.13.9 && useradd --system --uid 10001 --no-create-home app
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY contracts contracts
COPY servicekit servicekit
COPY services/{name} services/{name}
# only this service's slice of the workspace lock, installed non-editable into /app/.venv
RUN uv sync --frozen --no-dev --no-editable --package {name}-service
ENV PATH=/app/.venv/bin:$PATH SERVICE_NAME={name} SERVICE_PORT=8080
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \\
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
CMD ["uvicorn", {args}, "--host", "0.0.0.0", "--port", "8080"]
"""

COMPOSE_SERVICE = """\
  {name}:
    <<: *service
    build: {{context: .., dockerfile: services/{name}/Dockerfile}}
    environment: {{<<: *service-env, SERVICE_NAME: {name}}}
"""


def k8s_service(s: Service) -> str:
    replicas = "# replicas: set by the HorizontalPodAutoscaler in hpa.yaml" if s.hpa else f"replicas: {s.replicas}"
    return K8S_SERVICE.format(name=s.name, replicas=replicas, generated=GENERATED)


def k8s_hpa(svcs: list[Service]) -> str:
    scaled = [s for s in svcs if s.hpa]
    head = (f"# Autoscaling on CPU for the hot-path services ({', '.join(s.name for s in scaled)}).\n"
            f"# ({GENERATED})\n")
    return head + "---\n".join(K8S_HPA.format(name=s.name, min=s.hpa.min, max=s.hpa.max, cpu=s.hpa.cpu)
                               for s in scaled)


def dockerfile(s: Service) -> str:
    extra = s.dockerfile_extra.strip("\n")
    args = ", ".join(f'"{a}"' for a in s.uvicorn_args)
    return DOCKERFILE.format(name=s.name, generated=GENERATED, extra=f"{extra}\n" if extra else "", args=args)


def regions(svcs: list[Service]) -> dict[str, dict[str, str]]:
    """The generated regions of files that are otherwise written by hand: {file: {region: text}}."""
    return {
        "deploy/compose.yaml": {
            "gateway-depends-on": "".join(f"      {s.name}: {{condition: service_started}}\n"
                                          for s in svcs if s.gateway),
            "services": "".join(COMPOSE_SERVICE.format(name=s.name) for s in svcs),
        },
        "deploy/k8s/kustomization.yaml": {
            "resources": "".join(f"  - {s.name}.yaml\n" for s in svcs),
            "images": "".join(f'  - {{name: smeportal/{s.name}, newTag: "0.1.0"}}\n' for s in svcs),
        },
    }


_REGION = re.compile(r"^(?P<indent>[ \t]*)# >>> registry:(?P<name>[a-z-]+)[^\n]*\n(?P<body>.*?)"
                     r"^[ \t]*# <<< registry:(?P=name)[^\n]*\n", re.S | re.M)


def fill_regions(text: str, parts: dict[str, str], where: str) -> str:
    seen = set()

    def repl(m: re.Match) -> str:
        if m["name"] not in parts:
            raise RegistryError(f"{where}: unknown region registry:{m['name']}")
        seen.add(m["name"])
        first, last = m[0].splitlines(keepends=True)[0], m[0].splitlines(keepends=True)[-1]
        return first + parts[m["name"]] + last

    out = _REGION.sub(repl, text)
    if seen != set(parts):
        raise RegistryError(f"{where}: regions missing: {sorted(set(parts) - seen)}")
    return out


def rendered(root: Path = ROOT, svcs: list[Service] | None = None) -> dict[str, str]:
    """Every generated file: {path relative to the repo root: its text}."""
    svcs = svcs if svcs is not None else services()
    files = {}
    for target in ("compose", "k8s"):
        what = "deploy/compose.yaml" if target == "compose" else "deploy/k8s"
        files[f"deploy/{target}/haproxy.cfg"] = (
            f"# GENERATED by `python -m servicekit.registry render` from deploy/local/haproxy.cfg.tmpl and "
            f"services/registry.toml: gateway config for {what}\n" + haproxy(target, svcs=svcs))
    for s in svcs:
        files[f"deploy/k8s/{s.name}.yaml"] = k8s_service(s)
        files[f"services/{s.name}/Dockerfile"] = dockerfile(s)
    files["deploy/k8s/hpa.yaml"] = k8s_hpa(svcs)
    for rel, parts in regions(svcs).items():
        files[rel] = fill_regions((root / rel).read_text(), parts, rel)
    return files


def stale(root: Path = ROOT) -> list[str]:
    """The generated files whose committed text differs from what the registry renders."""
    return [rel for rel, text in rendered(root).items()
            if not (root / rel).exists() or (root / rel).read_text() != text]


def render(root: Path = ROOT) -> list[str]:
    changed = stale(root)
    for rel, text in rendered(root).items():
        if rel in changed:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    return changed


# ------------------------------------------------------------------------------------------------------- CLI

USAGE = "usage: registry names | ports [BASE] | bash | haproxy local|compose|k8s [KEY=VALUE…] | render | check"


def main(argv: list[str]) -> int:
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "names":
        print(" ".join(names()))
    elif cmd == "ports":
        base = int(args[0]) if args else int(os.environ.get("SERVICE_PORT_BASE") or DEFAULT_PORT_BASE)
        print("".join(f"{s.name} {s.local_port(base)}\n" for s in services()), end="")
    elif cmd == "bash":
        print(bash(services()), end="")
    elif cmd == "haproxy" and args and args[0] in ("local", "compose", "k8s"):
        values = dict(a.split("=", 1) for a in args[1:])
        sys.stdout.write(haproxy(args[0], values))
    elif cmd == "render":
        for rel in render():
            print(f"rewrote {rel}")
    elif cmd == "check":
        out = stale()
        if out:
            print("differ from services/registry.toml (run `python -m servicekit.registry render`):",
                  *out, sep="\n  ")
        return 1 if out else 0
    else:
        print(USAGE, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
