"""Pure rules of the notifications service (R-NOT-02..04, R-RAT-03): templates, who hears what, prompts, dedupe,
retries, channels and preferences (quiet hours, digest, one-click unsubscribe), messaging-app signatures."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

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
JST = ZoneInfo("Asia/Tokyo")

# R-NOT-03: what a dispatch status means, said to each party: what happened, then what that party does next.
STATUS_LABELS = {
    "ja": {"requested": "申込受付", "accepted": "審査通過", "refused": "不承認", "reserved": "予算確保",
           "approved": "派遣決定", "scheduled": "日程確定", "visited": "訪問実施", "reported": "報告書提出",
           "confirmed": "報告書確認済み", "paid": "謝金支払済み", "cancelled": "取消",
           "budget_unanswered": "予算確認の遅延"},
    "en": {"requested": "request received", "accepted": "passed screening", "refused": "refused",
           "reserved": "budget reserved", "approved": "approved", "scheduled": "visit plan fixed",
           "visited": "visit recorded", "reported": "report filed", "confirmed": "report confirmed",
           "paid": "fee paid", "cancelled": "cancelled", "budget_unanswered": "budget answer delayed"},
}

WHAT = {
    "ja": {"requested": "専門家派遣の申込を受け付けました。",
           "accepted": "申込が審査を通過しました。派遣枠（予算）を確保しています。",
           "refused": "申込は認められませんでした。理由: {reason}",
           "reserved": "派遣枠（予算）を確保しました。",
           "approved": "専門家派遣が決定しました。",
           "scheduled": "訪問日程が確定しました。",
           "visited": "専門家の訪問が記録されました。",
           "reported": "専門家が派遣報告書を提出しました。",
           "confirmed": "事務処理機関が報告書を確認しました（謝金 {fee}円、旅費 {travel}円）。",
           "paid": "謝金の支払いが完了しました（謝金 {fee}円、旅費 {travel}円）。",
           "cancelled": "派遣は取り消されました。確保していた予算は戻されました。{reason}",
           "budget_unanswered": "予算の確認に時間がかかっています。"},
    "en": {"requested": "Your expert dispatch request was received.",
           "accepted": "The request passed screening; the budget is being reserved.",
           "refused": "The request was refused. Reason: {reason}",
           "reserved": "The budget for the dispatch was reserved.",
           "approved": "The expert dispatch was approved.",
           "scheduled": "The visit plan was fixed.",
           "visited": "A visit of the expert was recorded.",
           "reported": "The expert filed the dispatch report.",
           "confirmed": "The processing agency confirmed the report (fee {fee} yen, travel {travel} yen).",
           "paid": "The fee was paid (fee {fee} yen, travel {travel} yen).",
           "cancelled": "The dispatch was cancelled and its budget released. {reason}",
           "budget_unanswered": "The budget answer is taking longer than it should."},
}

_WAIT = {"ja": "対応は不要です。次のお知らせをお待ちください。", "en": "Nothing to do now; we will tell you of the next step."}
# (status, role) -> what that party does next; a pair not listed means "nothing to do now" (_WAIT).
NEXT = {
    "ja": {("requested", "expert"): "直接申込（ルートB）の共同申請者として内容を確認し、連署してください。",
           ("requested", "business"): "審査の結果をお待ちください（直接申込は専門家の連署の後に審査します）。",
           ("refused", "business"): "理由を確認し、必要であれば内容を改めて申し込んでください。",
           ("refused", "institution"): "理由を確認し、必要であれば事業者と相談のうえ改めて申し込んでください。",
           ("approved", "institution"): "訪問日程を確定してください（日程は専門家ではなく窓口が決めます）。",
           ("approved", "business"): "相談窓口から訪問日程の連絡があります。",
           ("approved", "expert"): "日程の確定をお待ちください。専門家が直接日程を決めることはできません。",
           ("scheduled", "expert"): "訪問の開始時と終了時に、ポータルでチェックイン・チェックアウトしてください。",
           ("scheduled", "business"): "訪問の後、ポータルで訪問の従事証明（サインオフ）をしてください。",
           ("scheduled", "institution"): "原則として訪問に同行してください。",
           ("visited", "business"): "ポータルで訪問の従事証明（サインオフ）をしてください。",
           ("visited", "expert"): "すべての訪問が終わったら、派遣報告書を提出してください。",
           ("confirmed", "business"): "専門家を6項目で評価してください。評価が済むまで次回の無料派遣は申請できません。",
           ("confirmed", "institution"): "専門家を評価してください。",
           ("confirmed", "expert"): "謝金の支払いをお待ちください。",
           ("paid", "expert"): "入金をご確認ください。",
           ("cancelled", "business"): "必要であれば改めて申し込んでください。",
           ("cancelled", "institution"): "必要であれば事業者と相談のうえ改めて申し込んでください。",
           ("cancelled", "expert"): "この派遣の予定を解除してください。",
           ("budget_unanswered", "institution"): "事務処理機関が予算の確認をやり直します。対応は不要です。"},
    "en": {("requested", "expert"): "As the co-applicant of this direct (route B) request, check it and co-sign it.",
           ("requested", "business"): "Wait for the screening (a direct request is screened once the expert co-signs).",
           ("refused", "business"): "Read the reason; if it still makes sense, file a new request.",
           ("refused", "institution"): "Read the reason; if it still makes sense, file a new request with the business.",
           ("approved", "institution"): "Fix the visit plan (the desk fixes dates, not the expert).",
           ("approved", "business"): "Your support desk will tell you the visit dates.",
           ("approved", "expert"): "Wait for the visit plan; experts may not fix dates directly.",
           ("scheduled", "expert"): "Check in and out of each visit on the portal.",
           ("scheduled", "business"): "After each visit, sign it off on the portal.",
           ("scheduled", "institution"): "Accompany the expert on the visits where you can.",
           ("visited", "business"): "Sign off the visit on the portal.",
           ("visited", "expert"): "Once all visits are done, file the dispatch report.",
           ("confirmed", "business"): "Rate the expert on six axes; until you do, your next free dispatch cannot be applied for.",
           ("confirmed", "institution"): "Rate the expert.",
           ("confirmed", "expert"): "Wait for the payment of the fee.",
           ("paid", "expert"): "Check that the payment has arrived.",
           ("cancelled", "business"): "If still needed, file a new request.",
           ("cancelled", "institution"): "If still needed, file a new request with the business.",
           ("cancelled", "expert"): "Free the dates you kept for this dispatch.",
           ("budget_unanswered", "institution"): "The processing agency retries the budget; nothing to do now."},
}
ROLES = ("business", "expert", "institution")


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
        "ja": ("【支援ポータル】専門家派遣 {dispatch_id}: {status_label}",
               "{what}\n次にすること: {next_step}\n\n派遣 {dispatch_id} の詳細: {link}"),
        "en": ("[SME portal] Expert dispatch {dispatch_id}: {status_label}",
               "{what}\nWhat to do next: {next_step}\n\nDispatch {dispatch_id}: {link}"),
    },
    "platform_dispatch_member_added": {  # R-PF-03: the bureau hears of a new dispatch-capable member
        "ja": ("【支援ポータル】地域プラットフォームに派遣可能機関が加わりました: {platform_name}",
               "地域プラットフォーム「{platform_name}」（{platform_id}）に、派遣可能な構成機関「{org_name}」"
               "（{org_id}、類型 {institution_type}）が加わりました。\n"
               "次にすること: 構成機関の追加として届出内容を確認してください。\n\nプラットフォームの詳細: {link}"),
        "en": ("[SME portal] A dispatch-capable member joined {platform_name}",
               "The dispatch-capable institution {org_name} ({org_id}, type {institution_type}) joined the regional "
               "platform {platform_name} ({platform_id}).\nWhat to do next: review the added member as notified "
               "under R-PF-03.\n\nPlatform: {link}"),
    },
    "programme_recommended": {
        "ja": ("【支援ポータル】おすすめの支援施策: {title}", "あなたの地域・業種に合う支援施策があります: {title}\n{url}"),
        "en": ("[SME portal] Recommended programme: {title}", "A programme matching your region and industry: {title}\n{url}"),
    },
    "outcome_survey": {  # R-REC-08: the follow-up survey some months after a dispatch
        "ja": ("【支援ポータル】専門家派遣のその後についてのアンケート（{months}か月後）",
               "派遣（{dispatch_id}）から{months}か月が経ちました。支援の成果（取り組んだこと、売上の変化など）を"
               "ポータルでお知らせください。1分ほどで終わります。\n回答先: {link}/outcomes/{months}"),
        "en": ("[SME portal] How did the expert dispatch work out? ({months}-month survey)",
               "It is {months} months since dispatch {dispatch_id}. Please tell us at the portal what came of the "
               "support (actions taken, change in sales); it takes a minute.\nAnswer at: {link}/outcomes/{months}"),
    },
    "follow_up_due": {  # R-DSP-05: the requesting institution's follow-up of a route-A dispatch is due
        "ja": ("【支援ポータル】派遣後のフォローアップ時期です（{business_id}）",
               "ルートAの派遣（{dispatch_id}）の事業者 {business_id} について、{due_at}までの期間（第{period}期）の"
               "フォローアップが記録されていません。フォローアップは{until}まで続きます。\n記録先: {link}"),
        "en": ("[SME portal] A follow-up is due ({business_id})",
               "No follow-up of business {business_id} after route-A dispatch {dispatch_id} was recorded for period "
               "{period}, which ended on {due_at}. The follow-up runs until {until}.\nRecord it at: {link}"),
    },
    "joint_order_result": {  # R-POR-04: every applicant hears whether it won a lot
        "ja": ("【支援ポータル】共同受発注の結果: {title}",
               "共同受発注「{title}」（{order_id}）の結果です: {result}（ロット: {lots}）。\n詳細: {link}"),
        "en": ("[SME portal] Joint order result: {title}",
               "The result of joint order \"{title}\" ({order_id}): {result} (lots: {lots}).\nDetails: {link}"),
    },
    "community_reply": {  # R-POR-02: the asker hears of answers
        "ja": ("【支援ポータル】ご質問に回答がありました: {title}",
               "コミュニティのご質問「{title}」に新しい回答がありました。\n回答を確認し、役に立った回答には印を付けてください。\n{link}"),
        "en": ("[SME portal] Your question has a new answer: {title}",
               "Your community question \"{title}\" has a new answer.\nRead it, and mark the answer that helped.\n{link}"),
    },
    "community_moderated": {  # R-POR-02: moderation, always with its reason, reaches the author
        "ja": ("【支援ポータル】投稿の表示が変更されました",
               "コミュニティへのあなたの投稿（{target_kind}）について、運営が「{action}」を行いました。\n理由: {reason}\n{link}"),
        "en": ("[SME portal] The moderators changed your post",
               "The moderators did \"{action}\" on your community {target_kind}.\nReason: {reason}\n{link}"),
    },
    "match_interest": {  # R-POR-03: someone is interested in a posting
        "ja": ("【支援ポータル】掲載に関心が寄せられました: {title}",
               "マッチングの掲載「{title}」に関心が寄せられました。連絡先は双方が同意した後に表示されます。\n{link}"),
        "en": ("[SME portal] Someone is interested in your posting: {title}",
               "Someone is interested in your posting \"{title}\". Contact details show once both sides consent.\n{link}"),
    },
    "match_connected": {  # R-POR-03: both consented
        "ja": ("【支援ポータル】マッチングが成立しました",
               "双方が同意しました。相手の連絡先をポータルで確認できます。\n{link}"),
        "en": ("[SME portal] You are connected",
               "Both sides consented. The other side's contact details are on the portal.\n{link}"),
    },
    "application_status": {  # R-POR-05: every status change of an application reaches the business
        "ja": ("【支援ポータル】申請の状況: {title}（{status_ja}）",
               "支援施策「{title}」への申請（{application_id}、受付番号 {receipt_number}）は「{status_ja}」になりました。\n"
               "{reason_ja}\n詳細: {link}"),
        "en": ("[SME portal] Your application: {title} ({status})",
               "Your application ({application_id}, receipt {receipt_number}) to '{title}' is now {status}.\n"
               "{reason_en}\nDetails: {link}"),
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
        status, role = params["status"], params.get("role", "")
        values.setdefault("status_label", STATUS_LABELS.get(lang, STATUS_LABELS["en"]).get(status, status))
        values.setdefault("what", WHAT.get(lang, WHAT["en"]).get(status, "").format_map(values).strip())
        values.setdefault("next_step", NEXT.get(lang, NEXT["en"]).get((status, role), _WAIT.get(lang, _WAIT["en"])))
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


def status_audience(e: DispatchStatusChanged) -> list[tuple[str, str]]:
    """R-NOT-03: the parties of a dispatch, as (party, role): the business (its prime and member accounts), the
    expert (its account) and, on route A, the requesting institution (its linked staff)."""
    out = [(party("business", e.business_id), "business"), (party("expert", e.expert_id), "expert")]
    if e.institution_id:
        out.append((party("organisation", e.institution_id), "institution"))
    return out


def party(kind: str, party_id: str) -> str:
    """The read-model key of a party: `business:<id>`, `expert:<id>`, `organisation:<id>`, `bureau:<id>`."""
    return f"{kind}:{party_id}"


def status_params(e: DispatchStatusChanged, role: str, portal_url: str) -> dict[str, str]:
    """What the dispatch_status template needs for one party; the link is the dispatch's own page, which every
    party of the dispatch may read."""
    return {"dispatch_id": e.dispatch_id, "status": e.status, "role": role, "reason": e.reason or e.reason_code or "",
            "fee": f"{e.fee:,}" if e.fee is not None else "-", "travel": f"{e.travel:,}" if e.travel is not None else "-",
            "link": f"{portal_url}/api/dispatch/requests/{e.dispatch_id}"}


def people_of(parties: list[tuple[str, str]], members: dict[str, list[str]], struck: set[str]) -> dict[str, str]:
    """R-NOT-03: each person once (account -> the role they hear as, the first party that names them), leaving out
    revoked accounts (R-ID-06)."""
    out: dict[str, str] = {}
    for key, role in parties:
        for account in members.get(key, ()):
            if account not in struck:
                out.setdefault(account, role)
    return out


# Pages notices link to, behind the portal's address; each is a route the recipient may read.
LINKS = {"platform_dispatch_member_added": "/api/identity/platforms/{platform_id}",
         "outcome_survey": "/api/dispatch/requests/{dispatch_id}",
         "follow_up_due": "/api/dispatch/requests/{dispatch_id}/follow-ups",
         "programme_recommended": "/api/recommend/businesses/{business_id}/recommendations",
         "community_reply": "/api/community/threads/{thread_id}",
         "joint_order_result": "/api/community/joint-orders/{order_id}",
         "community_moderated": "/api/community/threads/{thread_id}",
         "match_interest": "/api/community/postings/{posting_id}/interests",
         "match_connected": "/api/community/matches/{match_id}",
         "application_status": "/api/recommend/applications/{application_id}"}


def link_param(template: str, params: dict[str, str], portal_url: str) -> dict[str, str]:
    """`link` (and `url`) for a template that has a page, when the sender named none that exists."""
    path = LINKS.get(template)
    if path is None or any(f"{{{k}}}" in path and not params.get(k) for k in ("platform_id", "business_id")):
        return {}
    link = portal_url + path.format_map(defaultdict(str, params))
    return {"link": link, "url": link}


# --- channels and preferences (R-NOT-04) ------------------------------------------------------------
CHANNELS = ("email", "webpush", "line")
CATEGORIES = ("dispatch", "rating", "programme", "platform", "saved_search", "reminder", "community", "other")
CATEGORY_OF = {"dispatch_status": "dispatch", "rating_owed": "rating", "programme_recommended": "programme",
               "platform_dispatch_member_added": "platform", "saved_search_match": "saved_search",
               "deadline_reminder": "reminder", "renewal_reminder": "reminder", "outcome_survey": "dispatch",
               "follow_up_due": "reminder", "community_reply": "community", "community_moderated": "community",
               "match_interest": "community", "match_connected": "community", "joint_order_result": "community",
               "application_status": "programme"}


def category_of(template: str) -> str:
    return CATEGORY_OF.get(template, "other")


@dataclass(frozen=True)
class Preferences:
    """What a person chose: channels on, per-category channels (a category not named goes to every channel that
    is on), quiet hours in Japanese time (start == end: none), categories gathered into one daily e-mail, and the
    channels paused by a bounce or an unfollow until the person resumes them."""

    channels: frozenset[str] = frozenset({"email"})
    categories: dict[str, frozenset[str]] | None = None
    quiet_start: time | None = None
    quiet_end: time | None = None
    digest: frozenset[str] = frozenset()
    digest_hour: int = 8
    paused: frozenset[str] = frozenset()

    @classmethod
    def of(cls, doc: dict) -> "Preferences":
        quiet = doc.get("quiet_hours") or {}
        channels = set(doc.get("channels") or ["email"])
        if doc.get("email_enabled") is False:  # the older switch of /me/contact
            channels.discard("email")
        return cls(channels=frozenset(channels),
                   categories={k: frozenset(v) for k, v in (doc.get("categories") or {}).items()},
                   quiet_start=_time(quiet.get("start")), quiet_end=_time(quiet.get("end")),
                   digest=frozenset(doc.get("digest") or ()), digest_hour=int(doc.get("digest_hour", 8)),
                   paused=frozenset((doc.get("paused") or {}).keys()))


def _time(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


def in_quiet_hours(p: Preferences, local: datetime) -> bool:
    """Quiet hours may cross midnight (22:00–07:00)."""
    if p.quiet_start is None or p.quiet_end is None or p.quiet_start == p.quiet_end:
        return False
    t = local.time()
    if p.quiet_start < p.quiet_end:
        return p.quiet_start <= t < p.quiet_end
    return t >= p.quiet_start or t < p.quiet_end


def quiet_until(p: Preferences, local: datetime) -> datetime:
    """When the next message may go out: now, or the end of the quiet hours (today's or tomorrow's)."""
    if not in_quiet_hours(p, local):
        return local
    end = local.replace(hour=p.quiet_end.hour, minute=p.quiet_end.minute, second=0, microsecond=0)
    return end if end > local else end + timedelta(days=1)


def next_digest_at(p: Preferences, local: datetime) -> datetime:
    """The daily digest goes at `digest_hour` (Japanese time), the next one after `local`, outside quiet hours."""
    at = local.replace(hour=p.digest_hour, minute=0, second=0, microsecond=0)
    if at <= local:
        at += timedelta(days=1)
    return quiet_until(p, at)


@dataclass(frozen=True)
class Plan:
    channel: str
    at: datetime | None  # when to send; None: into the daily digest


def plan(p: Preferences, category: str, local: datetime, reachable: frozenset[str]) -> list[Plan]:
    """R-NOT-04: the channels a message of `category` goes to and when. Only channels the person turned on, allows
    for the category, can be reached on (an address, a push subscription, a linked messaging account) and are not
    paused; quiet hours defer; a digest category goes into the day's e-mail digest instead of its own e-mail."""
    wanted = p.channels if p.categories is None or category not in p.categories else p.categories[category]
    out = []
    for channel in CHANNELS:
        if channel not in wanted or channel not in p.channels or channel not in reachable or channel in p.paused:
            continue
        if channel == "email" and category in p.digest:
            out.append(Plan(channel, None))
        else:
            out.append(Plan(channel, quiet_until(p, local)))
    return out


def message_id(delivery_id: str) -> str:
    """The Message-ID of an e-mail delivery (a bounce finds its delivery by it)."""
    return f"<{delivery_id.replace(':', '.')}@smeportal>"


def unsubscribe_url(portal_url: str, secret: bytes, account_id: str, category: str) -> str:
    return f"{portal_url}/api/notifications/unsubscribe/{unsubscribe_token(secret, account_id, category)}"


@dataclass(frozen=True)
class DigestEntry:
    """A message gathered into the person's daily digest `digest_id`, once per dedupe `key`."""

    digest_id: str
    key: str
    recipient_id: str
    due_at: datetime  # UTC
    subject: str
    body: str


@dataclass(frozen=True)
class Outgoing:
    """What one message makes on a person's channels: delivery documents (each `_id` its dedupe key, so the same
    message planned twice inserts nothing twice) and, for a digest category, its entry in the day's digest."""

    deliveries: tuple[dict, ...] = ()
    digest: DigestEntry | None = None


def wants_subscriptions(contact: dict, params: dict[str, str]) -> bool:
    """Whether planning a message for this person needs their push subscriptions (read only then: a lookup that
    is not by `_id`)."""
    return not params.get("email") and "webpush" in Preferences.of(contact).channels


def outgoing(*, key: str, recipient_id: str, template: str, params: dict[str, str], contact: dict,
             subscriptions: list[dict], at: datetime, portal_url: str, unsubscribe_secret: bytes,
             owed_id: str | None = None) -> Outgoing:
    """R-NOT-04: the deliveries one message makes for one person at `at` (aware), from their contact document
    (preferences, address, linked messaging account) and push subscriptions: one per channel (and subscription)
    that `plan` allows, deferred past quiet hours; a digest category goes into the daily digest instead. Every
    document's `_id` derives from the dedupe `key`. A sender that names the address (`params["email"]`, e.g. a
    test or an import) asks for e-mail only."""
    prefs = Preferences.of(contact)
    if params.get("email"):
        contact, prefs = {**contact, "email": params["email"]}, Preferences.of({**contact, "channels": ["email"]})
        subscriptions = []
    reachable = frozenset(c for c, ok in (("email", contact.get("email")), ("webpush", subscriptions),
                                          ("line", contact.get("line_user_id"))) if ok)
    category = category_of(template)
    local = at.astimezone(JST)
    subject, body, used = render(template, params, contact.get("language"))
    base = {"recipient_id": recipient_id, "subject": subject, "body": body, "language": used, "template": template,
            "category": category, "owed_id": owed_id, "status": "queued", "attempts": 0, "created_at": at,
            "history": []}
    payload = push_payload(subject, body, params.get("link") or params.get("url"))
    deliveries: list[dict] = []
    digest = None
    for step in plan(prefs, category, local, reachable):
        if step.at is None:
            due = next_digest_at(prefs, local)
            digest = DigestEntry(f"{recipient_id}:{due.date().isoformat()}", key, recipient_id, due.astimezone(UTC),
                                 subject, body)
            continue
        if step.channel == "email":
            docs = [{"_id": key, "to": contact["email"], "message_id": message_id(key),
                     "unsubscribe": unsubscribe_url(portal_url, unsubscribe_secret, recipient_id, category)}]
        elif step.channel == "webpush":
            docs = [{"_id": f"{key}:webpush:{s['_id']}", "to": s["endpoint"][:200], "subscription_id": s["_id"],
                     "subscription": {"endpoint": s["endpoint"], "keys": s["keys"]}, "payload": payload}
                    for s in subscriptions]
        else:  # line
            docs = [{"_id": f"{key}:line", "to": contact["line_user_id"], "payload": payload}]
        deliveries += [{**base, **doc, "channel": step.channel, "next_at": step.at.astimezone(UTC)} for doc in docs]
    return Outgoing(tuple(deliveries), digest)


def unsubscribe_token(secret: bytes, account_id: str, category: str) -> str:
    """RFC 8058 one-click unsubscribe: the link names the account and category and carries their HMAC, so the
    POST needs no login and nobody can forge another person's."""
    body = f"{account_id}|{category}"
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(body.encode() + b"|" + mac).decode().rstrip("=")


def read_unsubscribe_token(secret: bytes, token: str) -> tuple[str, str] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        account_id, category, mac = raw.split(b"|", 2)
    except (ValueError, binascii.Error):
        return None
    body = account_id + b"|" + category
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()[:16]):
        return None
    return account_id.decode(), category.decode()


def line_signature_ok(channel_secret: str, body: bytes, signature: str) -> bool:
    """A messaging-app webhook is genuine when X-Line-Signature is base64(HMAC-SHA256(channel secret, body))."""
    expected = base64.b64encode(hmac.new(channel_secret.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature or "")


def push_payload(subject: str, body: str, link: str | None) -> dict:
    """What a Web Push or messaging-app message carries: short, with the link to act on."""
    return {"title": subject, "body": body[:400], "url": link or ""}


def digest_text(items: list[dict], language: str) -> tuple[str, str]:
    """One e-mail for the day's gathered messages, newest last."""
    if language == "ja":
        subject = f"【支援ポータル】本日のお知らせ（{len(items)}件）"
        intro = "本日のお知らせをまとめてお送りします。"
    else:
        subject = f"[SME portal] Today's notices ({len(items)})"
        intro = "Your notices of the day, in one message."
    parts = [intro] + [f"■ {i['subject']}\n{i['body']}" for i in items]
    return subject, "\n\n".join(parts)


# --- saved searches and reminders (R-NOT-04, R-EX-04) ---------------------------------------------------------
@dataclass(frozen=True)
class AlertParams:
    deadline_days: int = 7      # remind followers of a programme this many days before its application deadline
    renewal_days: int = 30      # remind registered experts this many days before the fiscal year (and registration) ends


def _norm(values) -> set[str]:
    return {str(v).strip().lower() for v in values or () if str(v).strip()}


def programme_terms(tags: dict) -> list[str]:
    """What a programme is found under: its prefectures (or `pref:*` when nationwide) and industries (or `ind:*`)."""
    prefs = _norm(tags.get("prefectures")) or {"*"}
    inds = _norm(tags.get("industries")) or {"*"}
    return sorted({f"pref:{p}" for p in prefs} | {f"ind:{i}" for i in inds} | {"all"})


def expert_terms(expert: dict) -> list[str]:
    return sorted({f"field:{f}" for f in _norm(expert.get("fields"))} |
                  {f"region:{r}" for r in _norm(expert.get("regions"))} | {"all"})


def search_anchors(kind: str, criteria: dict) -> list[str]:
    """The terms one of which a new item must carry to be worth matching against this search, so that a new item
    reads only the searches it may concern (an indexed `$in`), not all of them."""
    if kind == "programme":
        if prefs := _norm(criteria.get("prefectures")):
            return sorted({f"pref:{p}" for p in prefs} | {"pref:*"})
        if inds := _norm(criteria.get("industries")):
            return sorted({f"ind:{i}" for i in inds} | {"ind:*"})
        return ["all"]
    if fields := _norm(criteria.get("fields")):
        return sorted(f"field:{f}" for f in fields)
    if regions := _norm(criteria.get("regions")):
        return sorted(f"region:{r}" for r in regions)
    return ["all"]


def _keywords_in(keywords, *texts) -> bool:
    words = _norm(keywords)
    text = " ".join(str(t) for t in texts).lower()
    return not words or any(w in text for w in words)


def programme_matches(criteria: dict, programme: dict) -> bool:
    """A programme matches when each criterion given matches: a prefecture it covers (nationwide covers all), an
    industry it targets (none named: all), one of the keywords in its name, purpose, target or keywords."""
    tags = programme.get("tags") or {}
    prefs, inds = _norm(criteria.get("prefectures")), _norm(criteria.get("industries"))
    if prefs and _norm(tags.get("prefectures")) and not prefs & _norm(tags.get("prefectures")):
        return False
    if inds and _norm(tags.get("industries")) and not inds & _norm(tags.get("industries")):
        return False
    return _keywords_in(criteria.get("keywords"), programme.get("name"), programme.get("purpose"),
                        programme.get("target"), " ".join(tags.get("keywords") or ()))


def expert_matches(criteria: dict, expert: dict) -> bool:
    """A registered expert matches when each criterion given overlaps: fields, regions, qualifications, keywords."""
    if expert.get("status") != "registered":
        return False
    for name in ("fields", "regions", "qualifications"):
        wanted = _norm(criteria.get(name))
        if wanted and not wanted & _norm(expert.get(name)):
            return False
    return _keywords_in(criteria.get("keywords"), expert.get("name"), " ".join(expert.get("fields") or ()))


def deadline_reminder_due(today: date, deadline: date, p: AlertParams = AlertParams()) -> bool:
    return 0 <= (deadline - today).days <= p.deadline_days


def renewal_reminder_due(today: date, registered_fiscal_year: int | None, p: AlertParams = AlertParams()) -> bool:
    """R-EX-04: a registration lasts its fiscal year (April–March); its expert is reminded to confirm the intent to
    continue in the last `renewal_days` of that year."""
    if registered_fiscal_year is None:
        return False
    current = today.year if today.month >= 4 else today.year - 1
    year_end = date(registered_fiscal_year + 1, 3, 31)
    return registered_fiscal_year == current and (year_end - today).days <= p.renewal_days


TEMPLATES.update({
    "saved_search_match": {
        "ja": ("【支援ポータル】保存した検索「{search_name}」に新しい結果: {title}",
               "保存した検索「{search_name}」に合う{what_kind}が新しく見つかりました: {title}\n"
               "次にすること: 内容を確認してください。\n\n{link}"),
        "en": ("[SME portal] New match for your saved search '{search_name}': {title}",
               "A new {what_kind} matches your saved search '{search_name}': {title}\nWhat to do next: have a look.\n\n{link}"),
    },
    "deadline_reminder": {
        "ja": ("【支援ポータル】申請期限が近づいています: {title}（{deadline}まで）",
               "支援施策「{title}」の申請期限は {deadline} です。\n次にすること: 申請する場合は期限までに手続きしてください。\n\n{link}"),
        "en": ("[SME portal] Application deadline soon: {title} (until {deadline})",
               "The application deadline of '{title}' is {deadline}.\nWhat to do next: if you want to apply, do so before "
               "then.\n\n{link}"),
    },
    "renewal_reminder": {
        "ja": ("【支援ポータル】専門家登録の更新（{fiscal_year}年度）をお忘れなく",
               "専門家登録は {fiscal_year}年度末（{year_end}）で終わります。\n"
               "次にすること: 継続する場合は、ポータルで更新の意思確認をしてください。\n\n{link}"),
        "en": ("[SME portal] Renew your expert registration (FY{fiscal_year})",
               "Your expert registration ends with fiscal year {fiscal_year} ({year_end}).\nWhat to do next: to continue, "
               "confirm your intent to renew on the portal.\n\n{link}"),
    },
})
