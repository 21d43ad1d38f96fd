"""Run by test_app_factory.py in a fresh interpreter with an empty environment: imports every service's app module
while os.environ is watched, then builds two apps of each service with different settings, and prints what it saw
as JSON. (A fresh process: importing and building apps configures logging and tracing, which the test run must keep.)
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

from servicekit import registry

SERVICES = registry.names()  # services/registry.toml
OURS = tuple(str(Path(__file__).resolve().parents[2] / d) for d in ("services", "servicekit", "contracts"))


class WatchedEnviron(dict):
    """os.environ that remembers every variable our own code (not a library's) looked up."""

    reads: list[str] = []

    def _note(self, key) -> None:
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename == os.__file__:  # os.getenv, os.environ.get
            frame = frame.f_back
        if frame is not None and frame.f_code.co_filename.startswith(OURS):
            self.reads.append(f"{key} in {frame.f_code.co_filename}:{frame.f_lineno}")

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key):
        self._note(key)
        return super().__contains__(key)


def imports() -> dict:
    """Imports the app modules; settings objects made meanwhile count as reads (pydantic-settings reads for us)."""
    from pydantic_settings import BaseSettings

    real, init = os.environ, BaseSettings.__init__

    def noted(self, *args, **kwargs):
        WatchedEnviron.reads.append(f"{type(self).__name__}() built from the environment")
        init(self, *args, **kwargs)

    os.environ, BaseSettings.__init__ = WatchedEnviron(real), noted
    errors = {}
    try:
        for name in SERVICES:
            try:
                importlib.import_module(f"{name}_service.app")
            except Exception as e:  # noqa: BLE001 - reported to the test
                errors[name] = repr(e)
    finally:
        os.environ, BaseSettings.__init__ = real, init
    return {"reads": WatchedEnviron.reads, "errors": errors}


def _private_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def two_apps(name: str, key_file: str) -> dict:
    from identity_service.settings import IdentitySettings
    from servicekit.settings import Settings

    module = importlib.import_module(f"{name}_service.app")
    made = []
    for side in ("a", "b"):
        common = dict(service_name=name, mongo_db=f"{name}_{side}", topic_prefix=f"{side}.",
                      kafka_bootstrap=f"kafka-{side}:9092", mongo_uri=f"mongodb://mongo-{side}:27017")
        settings = (IdentitySettings(**common, jwt_private_key_file=key_file) if name == "identity"
                    else Settings(**common))
        made.append((settings, module.create_app(settings)))
    (sa, a), (sb, b) = made
    shared = sorted(k for k, v in a.state._state.items()
                    if not isinstance(v, (str, int, float, bool, bytes, type(None))) and b.state._state.get(k) is v)
    return {
        "distinct_apps": a is not b,
        "distinct_services": a.state.service is not b.state.service,
        "databases": [a.state.service.db.name, b.state.service.db.name],
        "brokers_distinct": a.state.service.broker is not b.state.service.broker,
        "topics": [a.state.service.settings.topic("t"), b.state.service.settings.topic("t")],
        "settings_given": [a.state.settings.mongo_db == sa.mongo_db, b.state.settings.mongo_db == sb.mongo_db],
        "settings_type": type(a.state.settings).__name__,
        "shared_state": shared,
        "routes": [len(a.routes), len(b.routes)],
    }


def main() -> None:
    report = {"imports": imports(), "apps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "jwt-private.pem"
        _private_key(key)
        for name in SERVICES:
            try:
                report["apps"][name] = two_apps(name, str(key))
            except Exception as e:  # noqa: BLE001 - reported to the test
                report["apps"][name] = {"error": repr(e)}
    print("PROBE " + json.dumps(report))


if __name__ == "__main__":
    main()
