"""The experts service's own settings: the common ones plus its knobs, each read from the environment variable of
the same name (upper case) when `create_app()` is given no settings."""
from __future__ import annotations

from servicekit.settings import Settings


class ExpertsSettings(Settings):
    service_name: str = "experts"
    # R-ANC-02: who may search the directory until a settings document says otherwise ("public" or "institutions")
    experts_directory_visibility: str = "institutions"
