"""The identity service's own settings: the common ones plus its knobs, each read from the environment variable of
the same name (upper case) when `create_app()` is given no settings."""
from __future__ import annotations

from servicekit.settings import Settings


class IdentitySettings(Settings):
    service_name: str = "identity"
    # the signing keys: a rotating key directory (JWT_KEY_DIR), else one private key file with optional next and
    # retired keys (comma-separated files)
    jwt_key_dir: str = ""
    jwt_private_key_file: str = "var/keys/jwt-private.pem"
    jwt_retired_public_key_files: str = ""
    jwt_next_key_file: str = ""
    access_token_ttl: int = 300
    # where callers reach identity (default: OIDC_ISSUER/api/identity) and where links in account mails point
    identity_public_url: str = ""
    account_pages_url: str = ""
    totp_issuer: str = "SME Portal"  # the name authenticator apps show (R-ID-10)
    # account mails (R-ID-10)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "no-reply@smeportal.example.jp"
    smtp_timeout: float = 10
    smtp_attempts: int = 3
    smtp_backoff_seconds: float = 1
    # federated login with an upstream provider (R-ANC-03); none unless UPSTREAM_OIDC_ISSUER is set
    upstream_oidc_issuer: str = ""
    upstream_oidc_client_id: str = ""
    upstream_oidc_client_secret: str = ""
    upstream_oidc_name: str = "GビズID"

    @property
    def public_url(self) -> str:
        """Where callers reach this service (through the gateway by default)."""
        return self.identity_public_url or self.oidc_issuer + "/api/identity"

    @property
    def pages_url(self) -> str:
        """Where the links in mails point: these pages by default, or a portal front end (ACCOUNT_PAGES_URL)."""
        return self.account_pages_url or f"{self.public_url}/pages"
