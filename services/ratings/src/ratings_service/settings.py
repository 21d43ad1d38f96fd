"""The ratings service's own settings: the common ones plus its knobs, each read from the environment variable of
the same name (upper case) when `create_app()` is given no settings."""
from __future__ import annotations

from servicekit.settings import Settings


class RatingsSettings(Settings):
    service_name: str = "ratings"
    ratings_sweep_seconds: float = 60  # R-RAT-02: how often buckets leaving the window are swept
