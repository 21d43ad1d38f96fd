"""Pure rules of the notifications service (R-NOT-02, R-RAT-03): templates, prompts, dedupe, retries."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from contracts.events.dispatch import DispatchStatusChanged


@dataclass(frozen=True)
class Params:
    """Programme parameters of the notification rules."""

    prompt_emails_per_day: int = 1    # R-NOT-02: at most one "please rate" e-mail per owed rating per day
    max_attempts: int = 5             # e-mail delivery attempts before it is marked failed
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 600.0
    default_language: str = "ja"


PARAMS = Params()

STATUS_LABELS = {
    "ja": {"requested": "申込受付", "accepted": "専門家が受諾", "refused": "専門家が辞退", "reserved": "予算確保",
           "approved": "承認", "scheduled": "日程確定", "visited": "訪問済み", "reported": "報告書提出",
           "confirmed": "報告書確認済み", "paid": "謝金支払済み", "cancelled": "取消"},
    "en": {"requested": "requested", "accepted": "accepted by the expert", "refused": "declined by the expert",
           "reserved": "budget reserved", "approved": "approved", "scheduled": "scheduled", "visited": "visited",
           "reported": "report submitted", "confirmed": "report confirmed", "paid": "fee paid", "cancelled": "cancelled"},
}

# name -> language -> (subject, body); Japanese first, English as the fallback every template has.
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "rating_owed": {
        "ja": ("【支援ポータル】専門家派遣の評価をお願いします",
               "派遣（{dispatch_id}）が完了しました。ポータルにログインし、専門家を6項目で評価してください。\n"
               "評価が済むまで、次回の無料派遣は申請できません。"),
        "en": ("[SME portal] Please rate your expert dispatch",
               "Dispatch {dispatch_id} is complete. Please log in to the portal and rate the expert on six axes.\n"
               "Until you do, your next free dispatch cannot be applied for."),
    },
    "dispatch_status": {
        "ja": ("【支援ポータル】派遣 {dispatch_id} の状況: {status_label}",
               "派遣 {dispatch_id} の状況が「{status_label}」になりました。{reason}"),
        "en": ("[SME portal] Dispatch {dispatch_id}: {status_label}",
               "Dispatch {dispatch_id} is now '{status_label}'. {reason}"),
    },
    "programme_recommended": {
        "ja": ("【支援ポータル】おすすめの支援施策: {title}", "あなたの地域・業種に合う支援施策があります: {title}\n{url}"),
        "en": ("[SME portal] Recommended programme: {title}", "A programme matching your region and industry: {title}\n{url}"),
    },
    "generic": {
        "en": ("[SME portal] {subject}", "{message}"),
    },
}


def render(name: str, params: dict[str, str], language: str | None = None,
           templates: dict = TEMPLATES, p: Params = PARAMS) -> tuple[str, str, str]:
    """Subject, body and the language used: the wanted language (Japanese by default), else English;
    an unknown template falls back to `generic`. A missing parameter shows as blank, never an error."""
    tpl = templates.get(name) or templates["generic"]
    lang = language or p.default_language
    if lang not in tpl:
        lang = "en" if "en" in tpl else next(iter(tpl))
    subject, body = tpl[lang]
    values = defaultdict(str, params)
    if "status" in params:
        values.setdefault("status_label", STATUS_LABELS.get(lang, STATUS_LABELS["en"]).get(params["status"], params["status"]))
    values.setdefault("subject", name)
    return subject.format_map(values), body.format_map(values).strip(), lang


def prompt_email_key(owed_id: str, day: date) -> str:
    """R-NOT-02: the dedupe key of a "please rate" e-mail: one per owed rating per (Japanese) day."""
    return f"prompt:{owed_id}:{day.isoformat()}"


def backoff_seconds(attempts: int, p: Params = PARAMS) -> float:
    """Delay before the next delivery attempt after `attempts` failures (exponential, capped)."""
    return min(p.backoff_base_seconds * 2 ** max(attempts - 1, 0), p.backoff_max_seconds)


def delivery_after_failure(attempts: int, p: Params = PARAMS) -> str:
    """`queued` again (retry later) until the attempts run out, then `failed`."""
    return "failed" if attempts >= p.max_attempts else "queued"


def status_recipients(e: DispatchStatusChanged) -> list[str]:
    """R-NOT-02: each party of a dispatch hears of its status changes: business, expert, institution."""
    return [r for r in (e.business_id, e.expert_id, e.institution_id) if r]


def status_params(e: DispatchStatusChanged) -> dict[str, str]:
    return {"dispatch_id": e.dispatch_id, "status": e.status, "reason": e.reason or ""}
