"""The portal's web front end (web/) in a real browser: Playwright drives Debian's Chromium (headless, the system
executable; nothing is downloaded) against the seven services, the gateway and the portal's static server, all as
processes on the test's Kafka and MongoDB. The browser signs in through our own identity provider (code + PKCE),
calls only the public API through the gateway, and every page it visits is checked by axe-core (injected from
web/node_modules, pinned in web/package-lock.json): no serious or critical violation.

Set WEB_SCREENSHOTS=1 to write the screenshots the README shows into docs/screenshots/ (else they go to a temp dir).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from contracts.vocab import RATING_AXES, RIGHTS, MemberRole, fiscal_year
from tests.integration.stack import start_all, stop_all
from tests.support import (GATEWAY_PORT, LOCAL, ROOT, Namespace, gateway_env, shared_mailbox, worker_env,
                           token)

CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "correct horse battery 9"
PHONE = {"width": 390, "height": 844}
FY = fiscal_year(datetime.now(UTC) + timedelta(hours=9))
DAY = date(FY + 1, 2, 1)  # inside the fiscal year, after today
ISSUE = "Sales fell by 30% after our main wholesaler closed; we need a new sales channel strategy."
SHOTS = ROOT / "docs" / "screenshots"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                "(deploy/local/setup.sh installs it)")


# --- the stack: services, gateway, the portal's static server, the portal registered as an OAuth client ------------
@pytest.fixture(scope="module")
def portal(infra, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    ns = Namespace()
    url = f"http://127.0.0.1:{GATEWAY_PORT}"
    procs = start_all(infra, ns, tmp, gateway_ports=True, identity_env={"IDENTITY_PUBLIC_URL": f"{url}/api/identity"})
    config = tmp / "config.json"
    web_env = {**worker_env(), "WEB_CONFIG_FILE": str(config)}
    gw_env = gateway_env(infra, ns)
    try:
        subprocess.run([LOCAL / "gateway.sh", "start"], env=gw_env, check=True)
        subprocess.run([LOCAL / "web.sh", "start"], env=web_env, check=True)
        r = httpx.post(f"{url}/api/identity/clients", headers=auth("op-web", "operator"), json={
            "name": "支援ポータル (web)", "confidential": False, "first_party": True, "scopes": ["openid"],
            "grant_types": ["authorization_code", "refresh_token"], "redirect_uris": [f"{url}/"]})
        assert r.status_code == 201, r.text
        config.write_text(json.dumps({"client_id": r.json()["client_id"]}))
        yield url
    finally:
        subprocess.run([LOCAL / "web.sh", "stop"], env=web_env)
        subprocess.run([LOCAL / "gateway.sh", "stop"], env=gw_env)
        stop_all(procs, infra, ns)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def phone(browser, portal, request):
    """A phone-sized page (390×844) at the portal, Japanese locale; its last state is kept for a failing test."""
    ctx = browser.new_context(viewport=PHONE, locale="ja-JP", base_url=portal)
    page = ctx.new_page()
    yield page
    last = Path(os.environ.get("TMPDIR", "/tmp")) / f"web-last-{request.node.name[:60]}.png"
    page.screenshot(path=str(last), full_page=True)
    print(f"last page: {page.url} (screenshot {last})\n{page.locator('body').inner_text()[:2000]}")
    ctx.close()


# --- helpers -------------------------------------------------------------------------------------------------------
def auth(sub: str, *roles: str, **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), ttl=1800, **claims)}"}


def ok(r: httpx.Response, *codes: int) -> dict:
    assert r.status_code in (codes or (200, 201)), f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else {}


def eventually(check, timeout: float = 30, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(interval)


def axe(page, where: str) -> None:
    """No serious or critical accessibility violation on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text() + "\n;undefined")  # evaluated by the test, not a <script>: the page's CSP stays on
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
           if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe-core on {where}: {bad}"


def shot(page, name: str, tmp: Path | None = None) -> None:
    target = SHOTS if os.environ.get("WEB_SCREENSHOTS") else Path(os.environ.get("TMPDIR", "/tmp")) / "web-shots"
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)
    # after a full-page capture this Chromium keeps a stale viewport, and the next click misses: set it again
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": size["height"] + 1})
    page.set_viewport_size(size)


def visit(page, hash_: str, heading: str | None = None) -> None:
    """Opens a page of the app by its route and waits until its heading shows; then checks it with axe-core."""
    if page.url.endswith(f"/{hash_}"):
        page.reload()  # the same route again: load it afresh (a fragment-only goto would change nothing)
    else:
        page.goto(f"/{hash_}")
    if heading:
        page.get_by_role("heading", level=1, name=re.compile(heading)).wait_for()
    page.wait_for_selector("main h1")
    axe(page, hash_)


def mail_link(address: str, after: int = 0) -> str:
    sink = shared_mailbox()[0]
    msgs = eventually(lambda: [m for m in sink.to(address) if m["X-SMEPortal-Mail"] == "verify-email"][after:] or None)
    return re.search(r"(http\S+/pages/verify-email#token=\S+)", msgs[0].get_content()).group(1)


def sign_up_in_browser(page, email: str, name: str, kind_label: str) -> None:
    """Sign-up on the portal (R-ID-01) and the confirmation link from the mail opened in the browser (R-ID-10)."""
    visit(page, "#/signup", "アカウント")
    page.get_by_label("氏名").fill(name)
    page.get_by_label("メールアドレス").fill(email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_label("利用者の種類").select_option(label=kind_label)
    page.get_by_role("button", name="登録する").click()
    page.locator("main").get_by_text("確認メールを送りました").wait_for()
    page.goto(mail_link(email))
    page.get_by_role("button", name=re.compile("確認する")).click()
    page.get_by_text("メールアドレスを確認しました").wait_for()


def sign_in(page, email: str) -> None:
    """The portal's sign-in: to identity's login form (code + PKCE) and back, signed in."""
    page.goto("/")
    page.get_by_role("banner").get_by_role("button", name="ログイン").click()
    page.wait_for_url(re.compile(r"/api/identity/authorize\?"))
    assert "code_challenge_method=S256" in page.url and "code_challenge=" in page.url
    axe(page, "identity login form")
    page.get_by_label(re.compile("メールアドレス")).fill(email)
    page.get_by_label(re.compile("パスワード")).fill(PASSWORD)
    page.get_by_role("button", name=re.compile("ログイン")).click()
    page.get_by_text("ログイン中").wait_for()
    assert "code=" not in page.url  # the code does not stay in the address bar


def sign_out(page) -> None:
    page.get_by_role("button", name=re.compile("ログアウト|Sign out")).click()
    page.get_by_role("banner").get_by_role("button", name=re.compile("ログイン|Sign in")).wait_for()


def account_id(http: httpx.Client, email: str) -> str:
    """The id of the account behind `email` as identity's token endpoint would name it: read from the operator's view
    is not available, so the test signs in by the API (the same code + PKCE flow) and reads the token's subject."""
    import base64
    import hashlib
    import secrets
    from urllib.parse import parse_qs, urlsplit

    client_id = ok(http.get("/config.json"))["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = f"{str(http.base_url).rstrip('/')}/"
    r = http.post("/api/identity/authorize", data={"email": email, "password": PASSWORD, "client_id": client_id,
                                                   "redirect_uri": redirect, "scope": "openid", "state": "s",
                                                   "code_challenge": challenge, "code_challenge_method": "S256"})
    assert r.status_code == 302, r.text
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    t = ok(http.post("/api/identity/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                                  "redirect_uri": redirect, "code_verifier": verifier}))
    return jwt_sub(t["access_token"])


def jwt_sub(access: str) -> str:
    import jwt
    return jwt.decode(access, options={"verify_signature": False})["sub"]


def claim(org_id: str, platform_id: str, role: MemberRole) -> dict:
    return {"org_id": org_id, "platform_id": platform_id, "member_role": role.value,
            "rights": sorted(r.value for r in RIGHTS[role])}


@pytest.fixture(scope="module")
def programme(portal):
    """A platform with its frame and the chamber's share, and an approved expert whose account signs in for real."""
    http = httpx.Client(base_url=portal, timeout=20)
    bureau, agency = auth("officer-kyushu", "bureau", bureau_id="bureau-kyushu"), auth("agency-1", "agency")
    orgs = {}
    for name, kind in (("熊本市商工会", 1), ("熊本商工会議所", 2), ("肥後信用金庫", 8), ("よろず支援拠点", None)):
        orgs[name] = ok(http.post("/api/identity/organisations", headers=bureau, json={
            "name": name, "kind": "institution", "institution_type": kind}))["org_id"]
    rep, chamber = orgs["熊本市商工会"], orgs["熊本商工会議所"]
    pid = ok(http.post("/api/identity/platforms", headers=bureau, json={
        "name": "熊本県地域プラットフォーム", "bureau_id": "bureau-kyushu", "fiscal_year": FY,
        "representative_id": rep, "member_ids": list(orgs.values())}))["platform_id"]
    representative = auth("rep-staff", "institution", orgs=[claim(rep, pid, MemberRole.REPRESENTATIVE)])
    staff_orgs = [claim(chamber, pid, MemberRole.DISPATCH_MEMBER)]

    def allocated():
        r = http.post("/api/budget/frames", headers=bureau, json={
            "fiscal_year": FY, "platform_id": pid, "fee": 1_000_000, "travel": 100_000, "reason": "FY allocation"})
        return r.json() if r.status_code in (200, 201) else None
    fid = eventually(allocated)["frame_id"]
    ok(http.put(f"/api/budget/frames/{fid}/shares/{chamber}", headers=representative,
                json={"amount": 300_000, "reason": "chamber share"}))

    # the expert: a real account (signs in on a phone later), page, recommendation, application, approval
    email = f"expert-{uuid.uuid4().hex[:6]}@example.jp"
    before = len(shared_mailbox()[0].to(email))
    ok(http.post("/api/identity/accounts", json={"email": email, "password": PASSWORD, "real_name": "山田 花子",
                                                 "kind": "expert"}))
    link = mail_link(email, before)
    ok(http.post("/api/identity/accounts/verify-email", json={"token": link.split("#token=")[1]}), 204)
    expert_account = account_id(http, email)
    expert = auth(expert_account, "expert")
    expert_id = ok(http.post("/api/experts/experts/me", headers=expert, json={
        "name": "山田 花子", "qualifications": ["中小企業診断士"], "fields": ["sales_channels", "management"],
        "regions": ["熊本県"], "introduction": "販路開拓と事業再生 / sales channels and turnaround"}))["expert_id"]
    staff = auth("chamber-staff", "institution", orgs=staff_orgs)
    eventually(lambda: http.post(f"/api/experts/experts/{expert_id}/recommendations", headers=staff,
                                 json={"org_id": chamber}).status_code == 200)
    ok(http.post("/api/experts/experts/me/consents", headers=expert, json={"org_id": chamber}))
    ok(http.post("/api/experts/experts/me/application", headers=expert, json={
        "evidence": [{"route": "public_qualification", "qualification": "中小企業診断士"}], "no_disqualification": True}))
    ok(http.post(f"/api/experts/experts/{expert_id}/review", headers=agency, json={"decision": "approve"}))
    return {"http": http, "bureau": bureau, "agency": agency, "platform": pid, "frame": fid, "chamber": chamber,
            "staff_orgs": staff_orgs, "expert_id": expert_id, "expert": expert, "expert_email": email}


def route_a_dispatch(pg: dict, business_id: str, owner: str) -> tuple[str, dict]:
    """The chamber requests a dispatch for the business under its delegation (R-DSP-01, R-ID-08); budget approves."""
    http = pg["http"]
    biz = auth(owner, "business", biz=[{"id": business_id, "role": "prime"}])
    dlg = ok(http.post(f"/api/identity/businesses/{business_id}/delegations", headers=biz, json={
        "org_id": pg["chamber"], "scopes": ["dispatch:request", "dispatch:read"], "days": 30}), 201)
    staff = auth("chamber-staff", "institution", orgs=pg["staff_orgs"], dlg=[{
        "id": dlg["delegation_id"], "business_id": business_id, "org_id": pg["chamber"], "scopes": dlg["scopes"],
        "exp": dlg["expires_at"]}])
    body = {"business_id": business_id, "expert_id": pg["expert_id"], "institution_id": pg["chamber"], "issue": ISSUE,
            "issue_kind": "sales_channels", "beyond_self_help": True, "needs_specialist": True, "travel_estimate": 2_000,
            "planned_visits": [{"day": DAY.isoformat(), "hours": 3}], "accompanying_staff": ["chamber-staff"]}

    def accepted():
        r = http.post("/api/dispatch/requests", headers=staff, json=body)
        if r.status_code == 422 and "prime account" in r.text:
            return None  # dispatch has not yet learnt the binding from identity's events
        d = ok(r, 201)
        return d if d.get("reason_code") not in ("expert_not_registered", "expert_unknown", "institution_unknown",
                                                 "not_a_member") else None
    d = eventually(accepted)
    assert d["status"] == "accepted", d
    did = d["dispatch_id"]
    eventually(lambda: ok(http.get(f"/api/dispatch/requests/{did}", headers=pg["agency"]))["status"] == "approved")
    ok(http.post(f"/api/dispatch/requests/{did}/schedule", headers=staff, json={}))
    return did, staff


def status_of(pg: dict, did: str) -> str:
    return ok(pg["http"].get(f"/api/dispatch/requests/{did}", headers=pg["agency"]))["status"]


# --- 1. the skeleton: Japanese first, English switch, sign-in with PKCE, phone width --------------------------------
def test_portal_served_through_the_gateway_signs_in_with_pkce_japanese_first(phone, programme):
    page = phone
    base = str(programme["http"].base_url).rstrip("/")
    r = httpx.get(f"{base}/")
    assert r.status_code == 200 and "content-security-policy" in r.headers and r.headers["x-request-id"]
    assert httpx.get(f"{base}/any/deep/link").headers["content-type"].startswith("text/html")  # the app answers
    assert httpx.post(f"{base}/").status_code == 405  # the portal's pages are read only
    assert httpx.get(f"{base}/api/nowhere").status_code == 401  # /api/ stays the gateway's
    visit(page, "#/", "支援ポータル")
    assert page.evaluate("document.documentElement.lang") == "ja"
    shot(page, "01-home-ja")
    page.get_by_role("button", name="Switch to English").click()
    page.get_by_role("heading", level=1, name="SME Support Portal").wait_for()
    assert page.evaluate("document.documentElement.lang") == "en"
    axe(page, "home (en)")
    page.get_by_role("button", name="日本語に切り替え").click()
    page.get_by_role("heading", level=1, name="支援ポータル").wait_for()
    # keyboard: on a fresh page the skip link is the first stop, and it moves focus to the main content
    page.reload()
    page.get_by_role("heading", level=1, name="支援ポータル").wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # the expert signs in with code + PKCE and out again; nothing wider than the phone
    sign_in(page, programme["expert_email"])
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    axe(page, "home signed in")
    sign_out(page)


# --- 2. the business: sign-up to rating, the pop-up while a rating is owed, the radar updated ------------------------
def session_sub(page) -> str:
    return page.evaluate("JSON.parse(sessionStorage.getItem('smeportal.session')).claims.sub")


def test_R_RAT_03_R_RAT_01_R_DSP_02_business_journey_from_sign_up_to_rating_in_the_browser(phone, browser, programme):
    page, pg, http = phone, programme, programme["http"]
    email = f"owner-{uuid.uuid4().hex[:6]}@example.jp"
    sign_up_in_browser(page, email, "阿蘇 花子", "事業者")
    sign_in(page, email)
    assert page.locator("#please-rate").count() == 0  # nothing owed yet
    owner = session_sub(page)

    # the once-only profile with three periods of financials (R-ID-03, R-ANC-04); a sole proprietor is bound at once
    visit(page, "#/profile", "事業者情報")
    page.get_by_label("事業者名").fill("阿蘇みやげ店")
    page.get_by_label("都道府県").fill("熊本県")
    page.get_by_label("業種").fill("小売業")
    page.get_by_label("従業員数").fill("4")
    for i, (sales, profit) in enumerate(((52_000_000, 3_100_000), (48_000_000, 2_500_000), (45_500_000, -200_000))):
        page.locator(f"input[name=sales_{i}]").fill(str(sales))
        page.locator(f"input[name=op_{i}]").fill(str(profit))
    shot(page, "02-profile")
    page.get_by_role("button", name="事業者を登録する").click()
    page.locator("main").get_by_text("保存しました").wait_for()
    visit(page, "#/profile", "事業者情報")
    business_id = page.locator("main p code").inner_text()
    assert page.get_by_label("事業者名").input_value() == "阿蘇みやげ店"
    assert page.locator("input[name=sales_2]").input_value() == "45500000"
    # an edit is a new version of the profile (R-ID-03); recommend learns the financials from it (see the diagnosis)
    page.get_by_label("従業員数").fill("5")
    page.get_by_role("button", name="保存する").click()
    page.locator("main").get_by_text("保存しました").wait_for()

    # recommendations with their reasons, and a programme's page (R-REC-01/02)
    def recommended():
        visit(page, "#/recommendations", "おすすめ")
        return page.locator("ol.recs > li").count() > 0
    eventually(recommended, timeout=40, interval=1)
    assert page.locator("ol.recs > li").first.locator("h3", has_text="おすすめの理由").count() == 1
    shot(page, "03-recommendations")
    page.locator("ol.recs > li h2 a").first.click()
    page.get_by_role("link", name="戻る").wait_for()
    axe(page, "programme page")

    # a route-A dispatch for the business (the chamber, under a delegation), visited by the expert
    did, _ = route_a_dispatch(pg, business_id, owner)
    loc = {"lat": 32.80, "lon": 130.71, "place": "client office"}
    vid = ok(http.post(f"/api/dispatch/requests/{did}/visits", headers=pg["expert"],
                       json={"location": loc, "accompanied_by": ["chamber-staff"]}))["visit_id"]
    ok(http.post(f"/api/dispatch/requests/{did}/visits/{vid}/check-out", headers=pg["expert"], json={"location": loc}))
    # the business signs the visit off in the portal (R-ANC-01)
    visit(page, f"#/dispatches/{did}", "派遣")
    page.get_by_role("button", name="訪問を確認（従事証明）").click()
    page.locator("main").get_by_text("確認しました").wait_for()
    ok(http.post(f"/api/dispatch/requests/{did}/report", headers=pg["expert"],
                 json={"summary": "Mapped the channels; proposed a D2C pilot and a wholesaler list."}))
    confirmed = ok(http.post(f"/api/dispatch/requests/{did}/confirm", headers=pg["agency"], json={"travel": 1_500}))
    assert confirmed["status"] in ("confirmed", "paid"), confirmed
    biz = auth(owner, "business", biz=[{"id": business_id, "role": "prime"}])
    eventually(lambda: ok(http.get("/api/notifications/prompts", headers=biz)))

    # R-RAT-03: at the next login the pop-up asks for the rating
    sign_out(page)
    sign_in(page, email)
    dialog = page.get_by_role("dialog", name="評価のお願い")
    dialog.wait_for()
    axe(page, "please-rate pop-up")
    shot(page, "04-please-rate-popup")
    dialog.get_by_role("button", name="あとで").click()
    # my dispatches: the dispatch with its status, and the rating it owes
    visit(page, "#/dispatches", "派遣の一覧")
    row = page.locator("tr", has_text=did)
    row.get_by_text("支払済み").or_(row.get_by_text("確認済み")).wait_for()
    shot(page, "05-my-dispatches")
    row.get_by_role("link", name="評価する").click()

    # the six-axis rating form (R-RAT-01)
    page.get_by_role("heading", level=1, name="専門家の評価（6項目）").wait_for()
    axe(page, "rating form")
    for axis in ("コミュニケーション", "説明の丁寧さ・分かりやすさ", "専門性", "分析力", "実現力", "社会人としてのマナー"):
        page.get_by_role("group", name=re.compile(axis)).get_by_label("4").check()
    shot(page, "06-rating-form")
    page.get_by_role("button", name="評価する").click()
    page.locator("main").get_by_text("評価を送信しました").wait_for()

    # the expert's radar chart is updated (R-RAT-02)
    page.get_by_role("link", name="評価（レーダーチャート）").click()
    page.get_by_role("heading", level=2, name="評価（レーダーチャート）").wait_for()
    assert page.locator("#radar-count").inner_text().startswith("1 ")
    assert {page.locator(f"td[data-axis={a}]").inner_text() for a in RATING_AXES} == {"4.0"}
    axe(page, "expert page with radar")
    shot(page, "07-expert-radar")

    visit(page, "#/inbox", "お知らせ")  # the owed-rating notice is there too (R-NOT-02)
    page.locator("main .inbox li").first.wait_for()

    # the diagnosis as charts against the peers (R-REC-03), and who may act for the business, revocable (R-ID-08/09)
    def diagnosed():
        visit(page, "#/diagnosis", "経営診断")
        return page.locator("main .indicator").first.locator("dd").first.inner_text() != "—"
    eventually(diagnosed, interval=1)
    assert page.locator("main .indicator").count() == 3
    assert page.locator("main .indicator").nth(1).locator("dd").first.inner_text() == "6.0%"  # 3.1 M / 52 M
    shot(page, "13-diagnosis")
    staff_account = account_id(http, real_account(pg, f"staff-{uuid.uuid4().hex[:6]}@example.jp", "商工 二郎", "institution"))
    ok(http.post(f"/api/identity/organisations/{pg['chamber']}/staff", headers=pg["bureau"],
                 json={"account_id": staff_account}), 204)
    ok(http.post("/api/identity/disclosure-requests", headers=auth(staff_account, "institution", orgs=pg["staff_orgs"]),
                 json={"business_id": business_id, "purpose": "販路開拓の支援のため"}))
    visit(page, "#/access", "共有と代行")
    page.locator("main li", has_text=pg["chamber"]).get_by_role("button", name="代行を取り消す").click()
    page.locator("main").get_by_text("取り消しました").wait_for()
    page.locator("main li", has_text="販路開拓の支援のため").get_by_role("button", name="承認する").click()
    page.locator("main").get_by_text("承認する: OK").wait_for()
    page.get_by_role("heading", level=2, name="外部サービスによる読み取りの記録").wait_for()  # the read log (R-ID-04)
    shot(page, "15-sharing")
    assert [d["status"] for d in ok(http.get(f"/api/identity/businesses/{business_id}/disclosure-requests",
                                             headers=biz))] == ["approved"]
    assert [d["status"] for d in ok(http.get(f"/api/identity/businesses/{business_id}/delegations", headers=biz))] \
        == ["revoked"]

    # the pop-up is gone at the next login once the rating is given
    eventually(lambda: ok(http.get("/api/notifications/prompts", headers=biz)) == [])
    sign_out(page)
    sign_in(page, email)
    page.wait_for_timeout(1500)
    assert page.locator("#please-rate").count() == 0

    # route B (R-DSP-02): a web consultation with the expert, held, then the joint request from the business
    visit(page, "#/request", "ルートB")
    consult = page.locator("form").first
    consult.get_by_label("専門家ID").fill(pg["expert_id"])
    consult.get_by_label("件名").fill("新しい販路について")
    consult.get_by_label("相談内容").fill("卸売先の閉店で売上が落ちました。販路開拓の進め方を相談したいです。")
    consult.get_by_role("button", name="Web相談を始める").click()
    opened = page.locator("main").get_by_text(re.compile("Web相談を開始しました: "))
    opened.wait_for()
    cid = opened.inner_text().split(": ")[1].strip()
    ok(http.post(f"/api/dispatch/consultations/{cid}/held", headers=pg["expert"], json={}))
    form = page.locator("form").nth(1)
    form.get_by_label("専門家ID").fill(pg["expert_id"])
    form.get_by_label("経営課題").fill(ISSUE)
    form.get_by_label("自助努力では解決が難しい課題です").check()
    form.get_by_label("高度・専門的な知見が必要です").check()
    form.get_by_label("訪問希望日").fill(DAY.isoformat())
    shot(page, "08-route-b-request")
    form.get_by_role("button", name="申し込む").click()
    answer = page.locator("main").get_by_text(re.compile("申込みを受け付けました: dsp-"))
    answer.wait_for()
    assert "不受理" not in answer.inner_text(), answer.inner_text()
    direct = re.search(r"dsp-[0-9a-f]{16}", answer.inner_text()).group(0)

    # the expert co-signs it on the phone (R-DSP-02c); then it is screened, as a free dispatch of the business
    ctx = browser.new_context(viewport=PHONE, locale="ja-JP", base_url=str(http.base_url))
    expert_page = ctx.new_page()
    try:
        sign_in(expert_page, pg["expert_email"])
        visit(expert_page, "#/visits", "訪問")
        expert_page.get_by_label("派遣ID").fill(direct)
        expert_page.get_by_role("button", name="連名で申し込む").click()
        expert_page.locator("main").get_by_text(re.compile("連名しました")).wait_for()
    finally:
        ctx.close()
    assert status_of(pg, direct) in ("accepted", "reserved", "approved"), status_of(pg, direct)


# --- 3. the expert's visit on a phone, with a mocked position (R-ANC-01, R-DSP-09) -------------------------------
def a_business(pg: dict) -> tuple[str, str]:
    """A sole proprietor registered by its owner's account (bound at once, R-ID-07): (business id, owner account)."""
    owner = f"acct-biz-{uuid.uuid4().hex[:6]}"
    bid = ok(pg["http"].post("/api/identity/businesses", headers=auth(owner, "business"), json={
        "name": "菊池茶舗", "prefecture": "熊本県", "industry": "小売業", "employees": 3}))["business_id"]
    return bid, owner


def test_R_ANC_01_expert_checks_in_and_out_on_a_phone_with_the_browser_position(browser, portal, programme):
    pg, http = programme, programme["http"]
    business_id, owner = a_business(pg)
    did, _ = route_a_dispatch(pg, business_id, owner)
    ctx = browser.new_context(viewport=PHONE, locale="ja-JP", base_url=portal, permissions=["geolocation"],
                              geolocation={"latitude": 32.8031, "longitude": 130.7079, "accuracy": 10})
    page = ctx.new_page()
    try:
        sign_in(page, pg["expert_email"])
        visit(page, "#/visits", "訪問")
        page.get_by_label("派遣ID").fill(did)
        page.get_by_label("現在地").fill("菊池茶舗 店舗")
        page.get_by_role("button", name="チェックイン").click()
        page.locator("main").get_by_text(re.compile("チェックインしました")).wait_for()
        shot(page, "09-expert-check-in")
        axe(page, "visit after check-in")
        page.get_by_role("button", name="チェックアウト").click()
        page.locator("main").get_by_text(re.compile("チェックアウトしました")).wait_for()
        d = ok(http.get(f"/api/dispatch/requests/{did}", headers=pg["agency"]))
        (v,) = d["visits"]
        assert (v["check_in"]["location"]["lat"], v["check_in"]["location"]["lon"]) == (32.8031, 130.7079)
        assert v["check_out"]["location"]["place"] == "菊池茶舗 店舗" and v["check_in"]["at"] <= v["check_out"]["at"]

        # a signed declaration for a second visit whose check-in was missed, then the report
        decl = page.locator("section", has=page.get_by_role("heading", name=re.compile("時間の申告")))
        decl.get_by_label("開始").fill(f"{DAY.isoformat()}T10:00")
        decl.get_by_label("終了").fill(f"{DAY.isoformat()}T12:00")
        decl.get_by_label("理由").fill("電波がなくチェックインできなかったため")
        decl.get_by_label("署名").fill("山田 花子")
        decl.get_by_role("button", name="申告する").click()
        decl.get_by_text("申告しました").wait_for()
        report = page.locator("section", has=page.get_by_role("heading", name="報告書"))
        report.get_by_label("実施内容").fill("販路の棚卸しを行い、EC 試験販売と卸先候補の一覧を提案した。")
        report.get_by_role("button", name="報告書を提出").click()
        report.get_by_text("報告書を提出しました").wait_for()
        axe(page, "visit page after the report")
        d = ok(http.get(f"/api/dispatch/requests/{did}", headers=pg["agency"]))
        assert len(d["visits"]) == 2 and d["visits"][1]["declaration"]["signature"] == "山田 花子"
        assert d["status"] == "reported", d["status"]

        # the expert's own page, editable at any time, with when it cannot be dispatched (R-EX-03)
        visit(page, "#/expert/profile", "専門家ページ")
        page.get_by_label("自己紹介").fill("販路開拓と事業再生。熊本県内の小売・製造業を中心に支援しています。")
        page.locator("form").first.get_by_role("button", name="保存する").click()
        page.locator("main form").first.get_by_text("保存しました").wait_for()
        away = page.locator("section", has=page.get_by_role("heading", name="対応できない期間"))
        away.get_by_label("開始").fill((DAY + timedelta(days=30)).isoformat())
        away.get_by_label("終了").fill((DAY + timedelta(days=40)).isoformat())
        away.get_by_label("理由").fill("長期出張のため派遣不可")
        away.get_by_role("button", name="保存する").click()
        away.get_by_text("保存しました").wait_for()
        axe(page, "expert's own page")
        shot(page, "14-expert-profile")
        me = ok(http.get("/api/experts/experts/me", headers=pg["expert"]))
        assert me["profile"]["introduction"].startswith("販路開拓と事業再生。")
        assert me["availability"]["windows"][0]["start"] == (DAY + timedelta(days=30)).isoformat()
    finally:
        ctx.close()


# --- 4. institution staff file a route-A request; the bureau exports its CSV ----------------------------------------
def real_account(pg: dict, email: str, name: str, kind: str, **extra) -> str:
    """An account that signs in for real (self-registered, or created by an operator for staff kinds); its id."""
    http = pg["http"]
    before = len([m for m in shared_mailbox()[0].to(email) if m["X-SMEPortal-Mail"] == "verify-email"])
    body = {"email": email, "password": PASSWORD, "real_name": name, "kind": kind, **extra}
    if kind in ("bureau", "agency", "operator"):
        ok(http.post("/api/identity/staff-accounts", headers=auth("op-web", "operator"), json=body))
    else:
        ok(http.post("/api/identity/accounts", json=body))
    ok(http.post("/api/identity/accounts/verify-email", json={"token": mail_link(email, before).split("#token=")[1]}), 204)
    return email


def test_R_DSP_01_institution_staff_request_a_dispatch_on_route_A(phone, programme):
    page, pg, http = phone, programme, programme["http"]
    business_id, owner = a_business(pg)
    email = real_account(pg, f"staff-{uuid.uuid4().hex[:6]}@example.jp", "商工 一郎", "institution")
    staff_account = account_id(http, email)
    ok(http.post(f"/api/identity/organisations/{pg['chamber']}/staff", headers=pg["bureau"],
                 json={"account_id": staff_account}), 204)
    biz = auth(owner, "business", biz=[{"id": business_id, "role": "prime"}])
    ok(http.post(f"/api/identity/businesses/{business_id}/delegations", headers=biz, json={
        "org_id": pg["chamber"], "scopes": ["dispatch:request", "dispatch:read"], "days": 30}), 201)
    sign_in(page, email)  # the token now carries the chamber membership and the delegation
    visit(page, "#/institution/request", "ルートA")
    page.get_by_label("事業者ID").fill(business_id)
    page.get_by_label("支援機関ID").fill(pg["chamber"])
    page.get_by_label("専門家ID").fill(pg["expert_id"])
    page.get_by_label("経営課題").fill(ISSUE)
    page.get_by_label("自助努力では解決が難しい課題です").check()
    page.get_by_label("高度・専門的な知見が必要です").check()
    page.get_by_label("訪問希望日").fill(DAY.isoformat())
    shot(page, "10-institution-route-a")

    def answered():  # dispatch may still be learning the binding and the delegation from identity's events
        page.get_by_role("button", name="申し込む").click()
        note = page.locator("main .notice").last
        note.wait_for()
        return note.inner_text() if "dsp-" in note.inner_text() else None
    text = eventually(answered, timeout=40, interval=1)
    assert "受付" in text or "予算確保" in text or "承認" in text, text
    did = re.search(r"dsp-[0-9a-f]{16}", text).group(0)
    assert ok(http.get(f"/api/dispatch/requests/{did}", headers=pg["agency"]))["route"] == "A"

    # R-ANC-05: the institution asks to see the business's data; it sees it once the business approves
    visit(page, "#/institution/disclosures", "開示依頼")
    page.get_by_label("事業者ID").fill(business_id)
    page.get_by_label("目的").fill("事業承継の支援計画づくり")
    page.get_by_role("button", name="開示を依頼する").click()
    asked = page.locator("main li", has_text=business_id)
    asked.get_by_text("pending").wait_for()
    request_id = ok(http.get(f"/api/identity/businesses/{business_id}/disclosure-requests", headers=biz))[0]["request_id"]
    ok(http.post(f"/api/identity/disclosure-requests/{request_id}/approve", headers=biz, json={}))
    visit(page, "#/institution/disclosures", "開示依頼")
    page.locator("main li", has_text=business_id).get_by_role("button", name="データを見る").click()
    page.locator("main dd", has_text="菊池茶舗").wait_for()
    axe(page, "disclosures")


def totp_sign_in(page, email: str) -> None:
    """Sign-in of an agency or bureau account: the second factor it must have (R-ID-10), enrolled on the provider's
    page the first time (the secret read from its otpauth link, as an authenticator app would)."""
    import pyotp

    page.goto("/")
    page.get_by_role("banner").get_by_role("button", name="ログイン").click()
    page.get_by_label(re.compile("メールアドレス")).fill(email)
    page.get_by_label(re.compile("パスワード")).fill(PASSWORD)
    page.get_by_role("button", name=re.compile("ログイン")).click()
    uri = page.locator("#otpauth").get_attribute("href")
    secret = re.search(r"secret=([A-Z2-7]+)", uri).group(1)
    page.locator("input[name=code]").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name=re.compile("確認|Confirm|Verify")).click()
    page.locator("#recovery-codes").wait_for()
    page.get_by_role("button", name=re.compile("続ける")).click()
    page.get_by_text("ログイン中").wait_for()


def test_R_BUD_05_bureau_sees_the_ledger_and_exports_csv(browser, portal, programme):
    pg = programme
    email = real_account(pg, f"officer-{uuid.uuid4().hex[:6]}@example.jp", "九州 局子", "bureau", bureau_id="bureau-kyushu")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ja-JP", base_url=portal, accept_downloads=True)
    page = ctx.new_page()
    try:
        totp_sign_in(page, email)
        visit(page, "#/frames", "予算枠")
        page.get_by_label("予算枠ID").fill(pg["frame"])
        page.get_by_role("button", name="表示").click()
        page.get_by_role("heading", name="台帳", exact=True).or_(page.locator("main .notice.error")).wait_for()
        assert page.locator("main .notice.error").count() == 0, page.locator("main .notice.error").inner_text()
        assert page.locator("main table tbody tr").count() >= 2  # allocation and the chamber's share
        axe(page, "frames and ledger")
        shot(page, "11-bureau-ledger")
        with page.expect_download() as dl:
            page.get_by_role("button", name="予算執行レポート（CSV）").click()
        csv = Path(dl.value.path()).read_text()
        assert csv.splitlines()[0].startswith(("fiscal_year", "bureau_id", "platform_id", "member_id")) or "," in csv
        assert pg["platform"] in csv
        with page.expect_download() as dl:
            page.get_by_role("button", name="CSVで書き出す").click()
        ledger = Path(dl.value.path()).read_text().splitlines()
        assert ledger[0].startswith("seq,at,kind") and len(ledger) >= 3
    finally:
        ctx.close()


def test_R_DSP_09_agency_sees_its_review_queue_and_confirms_a_report(browser, portal, programme):
    pg, http = programme, programme["http"]
    # the queue: a second expert's stage-2 application waits for the formal review (R-EX-01)
    applicant = auth(f"acct-exp-{uuid.uuid4().hex[:6]}", "expert")
    applicant_id = ok(http.post("/api/experts/experts/me", headers=applicant, json={
        "name": "佐藤 次郎", "qualifications": ["税理士"], "fields": ["finance"], "regions": ["熊本県"],
        "introduction": "資金繰りの改善"}))["expert_id"]
    staff = auth("chamber-staff", "institution", orgs=pg["staff_orgs"])
    ok(http.post(f"/api/experts/experts/{applicant_id}/recommendations", headers=staff, json={"org_id": pg["chamber"]}))
    ok(http.post("/api/experts/experts/me/consents", headers=applicant, json={"org_id": pg["chamber"]}))
    ok(http.post("/api/experts/experts/me/application", headers=applicant, json={
        "evidence": [{"route": "public_qualification", "qualification": "税理士"}], "no_disqualification": True}))
    # a reported dispatch: visited, signed off by the business, reported by the expert
    business_id, owner = a_business(pg)
    did, _ = route_a_dispatch(pg, business_id, owner)
    loc = {"lat": 32.97, "lon": 130.81, "place": "店舗"}
    vid = ok(http.post(f"/api/dispatch/requests/{did}/visits", headers=pg["expert"],
                       json={"location": loc, "accompanied_by": ["chamber-staff"]}))["visit_id"]
    ok(http.post(f"/api/dispatch/requests/{did}/visits/{vid}/check-out", headers=pg["expert"], json={"location": loc}))
    start = datetime(DAY.year, DAY.month, DAY.day, 1, 0, tzinfo=UTC)  # the visit's real two hours, declared
    ok(http.post(f"/api/dispatch/requests/{did}/visits/declarations", headers=pg["expert"], json={
        "visit_id": vid, "start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat(),
        "reason": "check-out recorded late", "signed": True, "signature": "山田 花子"}))
    ok(http.post(f"/api/dispatch/requests/{did}/visits/{vid}/sign-off", headers=auth(
        owner, "business", biz=[{"id": business_id, "role": "prime"}]), json={}))
    ok(http.post(f"/api/dispatch/requests/{did}/report", headers=pg["expert"],
                 json={"summary": "資金繰り表を作成し、金融機関との面談準備を支援した。"}))

    email = real_account(pg, f"agency-{uuid.uuid4().hex[:6]}@example.jp", "事務 処理子", "agency")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ja-JP", base_url=portal)
    page = ctx.new_page()
    try:
        totp_sign_in(page, email)
        visit(page, "#/agency", "審査待ち")
        page.locator("main li", has_text=applicant_id).wait_for()
        page.get_by_label("派遣ID").fill(did)
        page.get_by_role("button", name="確認して支払う").click()
        page.locator("main .notice").wait_for()
        assert "確認しました: 10,000 円" in page.locator("main .notice").inner_text(), page.locator("main .notice").inner_text()
        axe(page, "agency queue after a confirmation")
        shot(page, "12-agency-queue")
        eventually(lambda: status_of(pg, did) == "paid")
    finally:
        ctx.close()
