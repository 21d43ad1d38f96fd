"""Apps are built by `create_app(settings)`, not at import (issue 14 item 8): importing a service's app module reads
no environment variable, and two apps of one service built with different settings in one process share nothing.
The probe runs in a fresh interpreter with an empty environment (tests/unit/app_factory_probe.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from servicekit import registry

SERVICES = registry.names()  # services/registry.toml
PROBE = Path(__file__).with_name("app_factory_probe.py")


@pytest.fixture(scope="module")
def probe() -> dict:
    done = subprocess.run([sys.executable, str(PROBE)], env={}, capture_output=True, text=True, timeout=300,
                          cwd=PROBE.parent)
    line = next((x for x in done.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line, f"the probe printed no report:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return json.loads(line.removeprefix("PROBE "))


def test_importing_an_app_module_reads_no_environment(probe):
    assert probe["imports"]["errors"] == {}, "an app module failed to import with an empty environment"
    assert probe["imports"]["reads"] == [], "read at import; move it into the service's settings"


@pytest.mark.parametrize("name", SERVICES)
def test_two_apps_with_different_settings_share_no_state(probe, name):
    got = probe["apps"][name]
    assert "error" not in got, got.get("error")
    assert got["distinct_apps"] and got["distinct_services"] and got["brokers_distinct"]
    assert got["databases"] == [f"{name}_a", f"{name}_b"]  # each app writes where its own settings say
    assert got["topics"] == ["a.t", "b.t"]
    assert got["settings_given"] == [True, True]
    assert got["settings_type"] != "Settings" or name in ("budget", "community")  # own knobs: own settings class
    assert got["shared_state"] == [], "app.state objects shared between the two apps"
    assert got["routes"][0] == got["routes"][1] > 3
