"""Service settings, all from environment variables (12-factor).

The environment is read once, by whoever starts a service (`create_app()` without settings, a command-line tool),
never when a module is imported: each service's `create_app(settings)` builds its app from the settings it is given,
so two apps with different settings can live in one process. A service with knobs of its own extends `Settings`
(`<name>_service/settings.py`), its fields named after the same environment variables as before.
"""
from __future__ import annotations

from typing import TypeVar

from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound="Settings")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    service_name: str = "service"
    kafka_bootstrap: str = "127.0.0.1:9092"
    mongo_uri: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = ""  # default: smeportal_<service>; each service owns its own database
    topic_prefix: str = ""  # tests isolate themselves with a unique prefix
    kafka_replication_factor: int = 1  # 3 on a real cluster (deploy/k8s)
    topic_partitions: int = 0  # 0: the registry's count per topic; tests use fewer to keep one broker light
    service_port: int = 8000
    jwt_public_key_file: str = ""
    jwt_jwks_url: str = ""  # identity's JWKS: verifying keys chosen by kid, followed through rotations (R-EXT-04)
    jwt_audience: str = "smeportal"
    jwt_issuer: str = ""  # default: OIDC_ISSUER, else the local gateway's address (what identity issues by default)
    oidc_issuer: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    otel_spans_file: str = ""  # JSON lines of finished spans (tests read it); empty: no file
    otel_exporter_otlp_endpoint: str = ""  # OTLP/HTTP base URL (traces + metrics), e.g. http://127.0.0.1:4318
    metrics_refresh_seconds: float = 5.0  # how often consumer lag is asked of the broker
    outbox_poll_seconds: float = 0.5
    # how often the relay looks through its collections for entries nobody handed it (a replica that died between a
    # write and its publish and was not restarted; a restart, and a failed pass, look at once): a scan reads every
    # document, ~1 s of a core over 23,000 dispatches on the local server, and never takes more than 1/100 of the time
    outbox_scan_seconds: float = 60.0
    # how long published events stay in their document before the relay removes them (servicekit.outbox): a change
    # that follows within this time is removed with them, one rewrite of the document fewer
    outbox_clear_after_seconds: float = 1.0
    # records a batch consumer takes from one poll (servicekit.bus). 200: with 500, the 1,000-command SIGKILL test
    # (tests/integration/test_budget_concurrency.py) left the local FerretDB (SQLite) hung twice; see README
    consumer_batch_max: int = 200
    consumer_batch_wait_ms: int = 500  # how long an idle batch consumer's poll waits (it returns when records come)
    # The longest the broker holds a consumer's fetch when it has nothing new (Kafka's fetch.max.wait.ms, default
    # 500). The saga's answers came up to ~430 ms late every few seconds under load: the fetch that should have
    # returned with them returned only at its 500 ms. 100 bounds that wait; the cost is idle fetches (the dispatch
    # service at rest: 1.2% of a core at 500, 2.5% at 100, 3.8% at 50).
    consumer_fetch_wait_ms: int = 100
    consumer_max_attempts: int = 3  # for a handler's own failures; a dependency that is down is waited for
    # A service's consumers (one per topic) share its group: each one that joins makes the others rejoin, and they
    # learn of it at their next heartbeat. At Kafka's default 3 s a service with five topics took ~14 s to start (and
    # its consumers paused as long at every restart); at 500 ms, ~3 s. Well under the 10 s session timeout.
    consumer_heartbeat_ms: int = 500
    mongo_timeout_ms: int = 2000  # server selection: how long a request waits for an unreachable database
    # R-REC-07 EBPM reports (servicekit.ebpm_keys): no cell under ebpm_min_cell businesses; the record keys' secret
    ebpm_min_cell: int = 5
    ebpm_key_secret: str = ""
    ebpm_key_secret_file: str = ""
    fault_crash_before_publish: bool = False  # test hook: exit hard between the DB write and the publish

    @property
    def issuer(self) -> str:
        """The only `iss` this service accepts in an access token."""
        return self.jwt_issuer or self.oidc_issuer

    @property
    def database(self) -> str:
        return self.mongo_db or f"smeportal_{self.service_name}"

    def topic(self, logical: str) -> str:
        return f"{self.topic_prefix}{logical}"

    def logical(self, topic: str) -> str:
        """The registry's name of a physical topic (metrics name topics so, whatever the deployment's prefix)."""
        return topic.removeprefix(self.topic_prefix)


def settings_for(cls: type[S], name: str, settings: Settings | None) -> S:
    """The settings a service's `create_app` runs with: `settings` if given (a plain `Settings` gains the service's
    own knobs at their defaults, without reading the environment), else the environment's, read here, once, with
    `service_name` fixed to `name` as `Service(name)` always did."""
    if settings is None:
        return cls(service_name=name)
    if isinstance(settings, cls):
        return settings
    return cls.model_construct(**settings.model_dump())
