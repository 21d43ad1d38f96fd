"""The notifications service's own settings: the common ones plus its channels' and clocks' knobs, each read from the
environment variable of the same name (upper case) when `create_app()` is given no settings."""
from __future__ import annotations

from notifications_service.domain import AlertParams
from servicekit.settings import Settings


class NotificationsSettings(Settings):
    service_name: str = "notifications"
    portal_url: str = ""  # where links in notices point; default the token issuer (OIDC_ISSUER)
    # e-mail (SMTP)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "no-reply@smeportal.example.jp"
    smtp_timeout: float = 10
    smtp_backoff_seconds: float = 2
    smtp_max_attempts: int = 5
    # sends per second per channel
    notify_rate_email: float = 50
    notify_rate_webpush: float = 200
    notify_rate_line: float = 100
    # the keys every replica shares: from these files, else made once and kept in the database
    notify_vapid_file: str = ""
    notify_unsubscribe_file: str = ""
    vapid_subject: str = ""  # default mailto:SMTP_FROM
    # the LINE-shaped messaging app
    line_api_base: str = "https://api.line.me"
    line_channel_token: str = ""
    line_channel_secret: str = ""
    line_timeout: float = 10
    # reminders of deadlines and renewals
    reminder_deadline_days: int = AlertParams.deadline_days
    reminder_renewal_days: int = AlertParams.renewal_days
    reminder_poll_seconds: float = 3600
