/** The business's pages: profile, recommendations, programme pages, route-B request, my dispatches, rating, radar. */
import { api } from "../api";
import { businessId, refresh, session } from "../auth";
import { field, h, input, notice, select, values } from "../dom";
import { lang, statusText, t } from "../i18n";
import { radarChart } from "../radar";
import type { Page } from "../main";

const AXES = ["communication", "clarity", "expertise", "analysis", "execution", "manners"] as const;
export const axisLabel = (a: string) => t(`axis_${a}` as any);

function needSignIn(main: HTMLElement): boolean {
  if (session()) return false;
  main.append(h("h1", {}, t("sign_in")), notice("error", t("need_sign_in")));
  return true;
}

const fiscalYear = () => { const d = new Date(); return d.getMonth() >= 3 ? d.getFullYear() : d.getFullYear() - 1; };
const yen = (n: number | null | undefined) => (n === null || n === undefined ? "—" : `${n.toLocaleString(lang)} ${lang === "ja" ? "円" : "JPY"}`);

// --- profile (R-ID-03, R-ANC-04: three periods of financials) ----------------------------------------
async function profile(main: HTMLElement): Promise<string> {
  if (needSignIn(main)) return t("profile");
  main.append(h("h1", {}, t("profile_title")));
  const mine = await api<any[]>("identity/businesses");
  const current = mine[0];
  const out = h("div", {});
  const fy = fiscalYear();
  const periods = [t("period_latest"), t("period_prev"), t("period_prev2")];
  const fin = (i: number) => current?.financials?.find((f: any) => f.fiscal_year === fy - 1 - i) ?? {};
  const val = (v: any) => (v === null || v === undefined ? "" : String(v));
  const form = h("form", {},
    field(t("business_name"), input("name", { required: true, value: val(current?.name), autocomplete: "organization" })),
    field(t("corporate_number"), input("corporate_number", { inputmode: "numeric", pattern: "[0-9]{13}", value: val(current?.corporate_number),
      disabled: !!current })),
    field(t("postal_code"), input("postal_code", { value: val(current?.postal_code), autocomplete: "postal-code" })),
    field(t("prefecture"), input("prefecture", { required: true, value: val(current?.prefecture) })),
    field(t("address"), input("address", { value: val(current?.address), autocomplete: "street-address" })),
    field(t("representative"), input("representative", { value: val(current?.representative) })),
    field(t("industry"), input("industry", { required: true, value: val(current?.industry) })),
    field(t("employees"), input("employees", { type: "number", min: 0, required: true, value: val(current?.employees) })),
    field(t("capital"), input("capital", { type: "number", min: 0, value: val(current?.capital) })),
    h("fieldset", {}, h("legend", {}, t("financials")),
      ...periods.map((label, i) => h("fieldset", { class: "period" }, h("legend", {}, `${label} (${t("fiscal_year")} ${fy - 1 - i})`),
        field(t("sales"), input(`sales_${i}`, { type: "number", value: val(fin(i).sales) })),
        field(t("operating_profit"), input(`op_${i}`, { type: "number", value: val(fin(i).operating_profit) }))))),
    h("button", { type: "submit", class: "primary" }, current ? t("save") : t("register_business")), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(form);
    const num = (s: string) => (s === "" || s === undefined ? null : Number(s));
    const financials = [0, 1, 2].filter((i) => v[`sales_${i}`] !== "").map((i) => ({
      fiscal_year: fy - 1 - i, sales: num(v[`sales_${i}`]), operating_profit: num(v[`op_${i}`]) }));
    const body: any = { name: v.name, prefecture: v.prefecture, industry: v.industry, employees: Number(v.employees),
      postal_code: v.postal_code || null, address: v.address || null, representative: v.representative || null,
      capital: num(v.capital), financials };
    try {
      if (current) await api(`identity/businesses/${current.business_id}`, { method: "PATCH", json: body });
      else {
        await api("identity/businesses", { method: "POST", json: { ...body, corporate_number: v.corporate_number || null } });
        await refresh();  // the new binding (R-ID-07) is in the next token
      }
      out.replaceChildren(notice("ok", t("saved")));
    } catch (e) {
      out.replaceChildren(notice("error", (e as Error).message));
    }
  });
  if (current) main.append(h("p", {}, `${t("business_id")}: `, h("code", {}, current.business_id)));
  main.append(form);
  return t("profile");
}

// --- recommendations with reasons, programme pages (R-REC-01/02) ------------------------------------
async function recommendations(main: HTMLElement): Promise<string> {
  if (needSignIn(main)) return t("recommendations");
  main.append(h("h1", {}, t("recommendations")));
  const bid = businessId();
  const recs = bid ? await api<any[]>(`recommend/businesses/${encodeURIComponent(bid)}/recommendations`).catch(() => []) : [];
  if (!recs.length) { main.append(h("p", {}, t("no_recommendations"))); return t("recommendations"); }
  main.append(h("ol", { class: "recs" }, ...recs.map((r) => h("li", {},
    h("h2", {}, h("a", { href: `#/programmes/${encodeURIComponent(r.programme.programme_id)}` }, r.programme.name)),
    h("p", {}, r.programme.purpose),
    h("h3", {}, t("reasons")), h("ul", {}, ...r.reasons.map((x: string) => h("li", {}, x)))))));
  return t("recommendations");
}

async function programmePage(main: HTMLElement, id: string): Promise<string> {
  const p = await api<any>(`recommend/programmes/${encodeURIComponent(id)}`).catch(() => null);
  if (!p) { main.append(h("h1", {}, t("not_found"))); return t("not_found"); }
  const row = (k: string, v: string | null | undefined) => (v ? [h("dt", {}, k), h("dd", {}, v)] : []);
  main.append(h("h1", {}, p.name), h("dl", {},
    ...row(t("fiscal_year"), String(p.fiscal_year)), ...row(t("purpose"), p.purpose), ...row(t("target"), p.target),
    ...row(t("subsidy_rate"), p.subsidy_rate), ...row(t("cap_yen"), p.cap_yen ? yen(p.cap_yen) : null),
    ...row(t("budget"), p.budget_oku_yen ? `${p.budget_oku_yen} 億円` : null)),
    h("p", {}, h("a", { href: "#/recommendations" }, t("back"))));
  return p.name;
}

// --- route-B request and web consultation (R-DSP-02) ------------------------------------------------
const KINDS = ["management", "finance", "sales_channels", "product_development", "it_dx", "business_succession", "hr", "tax", "legal"];

export function requestForm(routeA: boolean, onDone: (d: any) => void): HTMLFormElement {
  const out = h("div", {});
  const form = h("form", {},
    ...(routeA ? [field(t("business_id"), input("business_id", { required: true })),
                  field(t("institution_id"), input("institution_id", { required: true }))] : []),
    field(t("expert_id"), input("expert_id", { required: true })),
    field(t("issue_kind"), select("issue_kind", KINDS.map((k) => [k, k.replace(/_/g, " ")]))),
    field(t("issue"), h("textarea", { name: "issue", required: true, rows: 4, minlength: 20 })),
    h("div", { class: "check" }, h("input", { type: "checkbox", name: "beyond_self_help", id: "bsh", required: true }), h("label", { for: "bsh" }, t("beyond_self_help"))),
    h("div", { class: "check" }, h("input", { type: "checkbox", name: "needs_specialist", id: "nsp", required: true }), h("label", { for: "nsp" }, t("needs_specialist"))),
    field(t("visit_day"), input("day", { type: "date", required: true })),
    field(t("visit_hours"), input("hours", { type: "number", min: 0.5, max: 3, step: 0.5, value: "2", required: true })),
    h("button", { type: "submit", class: "primary" }, t("submit_request")), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(form);
    const body: any = { expert_id: v.expert_id, issue: v.issue, issue_kind: v.issue_kind, beyond_self_help: true, needs_specialist: true,
      planned_visits: [{ day: v.day, hours: Number(v.hours) }] };
    if (routeA) Object.assign(body, { business_id: v.business_id, institution_id: v.institution_id, accompanying_staff: [session()!.claims.sub] });
    else body.business_id = businessId();
    try {
      const d = await api("dispatch/requests", { method: "POST", json: body });
      out.replaceChildren(notice(d.status === "refused" ? "error" : "ok", `${t("requested")}: ${d.dispatch_id} — ${statusText(d.status)}${d.reason ? ` (${d.reason})` : ""}`));
      onDone(d);
    } catch (e) {
      out.replaceChildren(notice("error", (e as Error).message));
    }
  });
  return form;
}

async function requestPage(main: HTMLElement): Promise<string> {
  if (needSignIn(main)) return t("request");
  main.append(h("h1", {}, t("request_b")));
  const bid = businessId();
  if (bid) {
    const free = await api<any>(`dispatch/businesses/${encodeURIComponent(bid)}/free-dispatches`).catch(() => null);
    if (free) main.append(h("p", { class: "lead" }, `${t("free_left")}: `, h("strong", {}, String(free.remaining ?? "—"))));
  }
  const out = h("div", {});
  const consult = h("form", {},
    field(t("expert_id"), input("expert_id", { required: true })),
    field(t("consult_subject"), input("subject", { required: true, minlength: 3 })),
    field(t("consult_message"), h("textarea", { name: "message", required: true, rows: 3 })),
    h("button", { type: "submit" }, t("open_consultation")), out);
  consult.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const c = await api("dispatch/consultations", { method: "POST", json: { ...values(consult), business_id: bid } });
      out.replaceChildren(notice("ok", `${t("consultation_opened")}: ${c.consultation_id}`));
    } catch (e) { out.replaceChildren(notice("error", (e as Error).message)); }
  });
  main.append(h("section", { "aria-labelledby": "c-h" }, h("h2", { id: "c-h" }, t("consultation")), consult),
    h("section", { "aria-labelledby": "r-h" }, h("h2", { id: "r-h" }, t("request")), requestForm(false, () => undefined)));
  return t("request");
}

// --- my dispatches (R-DSP-14 status, R-OPS-01 worklist), visit sign-off (R-ANC-01) -------------------------
/** Every dispatch of each business the account acts for, newest first, from dispatch's worklist (a read model kept by
 * its events), a page at a time; the rating each one owes links to the form. */
async function dispatches(main: HTMLElement): Promise<string> {
  if (needSignIn(main)) return t("dispatches");
  main.append(h("h1", {}, t("dispatches")));
  const owed = new Set((await api<any[]>("ratings/pending").catch(() => [])).map((p) => p.dispatch_id));
  const lists = ((session()?.claims.biz ?? []) as any[]).map((b) => ({ business: b.id as string, cursor: "", done: false }));
  const tbody = h("tbody", {});
  const more = h("button", { type: "button" }, t("more"));
  const row = (d: any) => h("tr", {},
    h("td", {}, h("a", { href: `#/dispatches/${d.dispatch_id}` }, d.dispatch_id)),
    h("td", {}, h("a", { href: `#/experts/${d.expert_id}` }, d.expert_id)),
    h("td", { class: `status-${d.status}` }, statusText(d.status)),
    h("td", {}, owed.has(d.dispatch_id) ? h("a", { href: `#/rate/${d.dispatch_id}`, class: "button" }, t("rate")) : ""));
  async function nextPages() {
    for (const l of lists.filter((x) => !x.done)) {
      const q = new URLSearchParams({ business_id: l.business, limit: "50", ...(l.cursor ? { cursor: l.cursor } : {}) });
      const page = await api<{ items: any[]; next_cursor: string | null }>(`dispatch/worklists/business?${q}`);
      tbody.append(...page.items.map(row));
      l.cursor = page.next_cursor ?? "";
      l.done = !page.next_cursor;
    }
    more.hidden = lists.every((l) => l.done);
  }
  more.addEventListener("click", () => { nextPages().catch((e) => main.append(notice("error", (e as Error).message))); });
  await nextPages();
  if (!tbody.childElementCount) { main.append(h("p", {}, t("no_dispatches"))); return t("dispatches"); }
  main.append(h("div", { class: "table-scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, ...[t("dispatch"), t("expert"), t("status"), ""].map((c) => h("th", { scope: "col" }, c)))),
    tbody)), more);
  return t("dispatches");
}

async function dispatchPage(main: HTMLElement, id: string): Promise<string> {
  if (needSignIn(main)) return t("dispatch");
  const d = await api(`dispatch/requests/${encodeURIComponent(id)}`);
  main.append(h("h1", {}, `${t("dispatch")} ${d.dispatch_id}`),
    h("dl", {}, h("dt", {}, t("status")), h("dd", { class: `status-${d.status}` }, statusText(d.status)),
      h("dt", {}, t("expert")), h("dd", {}, h("a", { href: `#/experts/${d.expert_id}` }, d.expert_id)),
      h("dt", {}, t("issue")), h("dd", {}, d.issue ?? "")));
  const visits: any[] = d.visits ?? [];
  if (visits.length) {
    main.append(h("h2", {}, t("visits")), h("ul", {}, ...visits.map((v) => {
      const from = v.declaration?.start ?? v.check_in?.at, to = v.declaration?.end ?? v.check_out?.at;
      const when = (x: string | undefined) => (x ? new Date(x).toLocaleString(lang) : "—");
      const li = h("li", {}, `${when(from)} – ${when(to)} `);
      if (session()?.claims.biz?.length && !v.signed_off) {
        li.append(h("button", { type: "button", onclick: async (ev: Event) => {
          await api(`dispatch/requests/${d.dispatch_id}/visits/${v.visit_id}/sign-off`, { method: "POST", json: {} });
          (ev.target as HTMLButtonElement).replaceWith(t("signed_off"));
        } }, t("sign_off")));
      }
      return li;
    })));
  }
  const owed = (await api<any[]>("ratings/pending").catch(() => [])).some((p) => p.dispatch_id === d.dispatch_id);
  if (owed) main.append(h("p", {}, h("a", { href: `#/rate/${d.dispatch_id}`, class: "button primary" }, t("rate"))));
  return `${t("dispatch")} ${d.dispatch_id}`;
}

// --- six-axis rating (R-RAT-01), the pop-up while one is owed (R-RAT-03) ----------------------------
async function ratePage(main: HTMLElement, dispatchId: string): Promise<string> {
  if (needSignIn(main)) return t("rate");
  main.append(h("h1", {}, t("rate_title")), h("p", {}, `${t("dispatch")}: ${dispatchId}`));
  const out = h("div", {});
  const form = h("form", {}, ...AXES.map((a) => h("fieldset", { class: "scale" },
      h("legend", {}, axisLabel(a), h("span", { class: "hint" }, ` — ${t("rate_legend")}`)),
      ...[1, 2, 3, 4, 5].map((n) => h("label", { class: "pill" },
        h("input", { type: "radio", name: a, value: n, required: true }), h("span", {}, String(n)))))),
    field(t("comment"), h("textarea", { name: "comment", rows: 3, maxlength: 1000 })),
    h("button", { type: "submit", class: "primary" }, t("rate")), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(form);
    const scores = Object.fromEntries(AXES.map((a) => [a, Number(v[a])]));
    try {
      const pending = await api<any[]>("ratings/pending");
      await api("ratings/ratings", { method: "POST", json: { dispatch_id: dispatchId, scores, comment: v.comment || null } });
      const expert = pending.find((p) => p.dispatch_id === dispatchId)?.expert_id;
      form.replaceWith(notice("ok", t("rated")), ...(expert ? [h("p", {}, h("a", { href: `#/experts/${expert}` }, t("radar")))] : []));
    } catch (e) { out.replaceChildren(notice("error", (e as Error).message)); }
  });
  main.append(form);
  return t("rate");
}

/** R-RAT-03: shown at every login while the signed-in account owes a rating. */
export async function ratingPopup(): Promise<void> {
  const prompts = await api<any[]>("notifications/prompts").catch(() => []);
  if (!prompts.length) return;
  const first = prompts[0];
  const dialog = h("dialog", { "aria-labelledby": "rate-h", "aria-describedby": "rate-d", class: "popup", id: "please-rate" },
    h("h2", { id: "rate-h" }, t("please_rate")), h("p", { id: "rate-d" }, t("please_rate_body")),
    h("p", { class: "hint" }, first.message),
    h("div", { class: "actions" },
      h("a", { href: `#/rate/${first.dispatch_id}`, class: "button primary", onclick: () => dialog.close() }, t("rate_now")),
      h("button", { type: "button", onclick: () => dialog.close() }, t("later"))));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

// --- the expert's public page with the radar (R-EX-03, R-RAT-02) -------------------------------------
async function expertPage(main: HTMLElement, id: string): Promise<string> {
  const e = await api(`experts/experts/${encodeURIComponent(id)}`).catch(() => null);
  const name = e?.name ?? id;
  main.append(h("h1", {}, `${t("expert_page")}: ${name}`));
  if (e) {
    main.append(h("dl", {},
      h("dt", {}, t("qualifications")), h("dd", {}, (e.qualifications ?? []).join("、")),
      h("dt", {}, t("fields")), h("dd", {}, (e.fields ?? []).join(", ")),
      h("dt", {}, t("introduction")), h("dd", {}, e.introduction ?? "")));
  }
  const radar = await api(`ratings/experts/${encodeURIComponent(id)}/radar`);
  main.append(h("section", { "aria-labelledby": "radar-h" }, h("h2", { id: "radar-h" }, t("radar")),
    radar.count ? radarChart(radar, axisLabel) : h("p", {}, t("radar_none")),
    h("p", { id: "radar-count" }, `${radar.count} ${t("radar_count", { days: radar.window_days })}`)));
  return name;
}

async function inbox(main: HTMLElement): Promise<string> {
  if (needSignIn(main)) return t("inbox");
  main.append(h("h1", {}, t("inbox")));
  const items = await api<any[]>("notifications/inbox");
  if (!items.length) main.append(h("p", {}, t("no_messages")));
  else main.append(h("ul", { class: "inbox" }, ...items.map((m) => h("li", { class: m.read ? "read" : "unread" },
    h("h2", {}, m.subject), h("p", { class: "hint" }, new Date(m.at).toLocaleString(lang)), h("p", { class: "pre" }, m.body)))));
  return t("inbox");
}

// --- management diagnosis as charts: the business against its peers (R-REC-03) -------------------------
const INDICATORS: Record<string, [string, string, (v: number) => string]> = {
  sales_growth: ["売上高増加率", "Sales growth", (v) => `${(v * 100).toFixed(1)}%`],
  operating_margin: ["営業利益率", "Operating margin", (v) => `${(v * 100).toFixed(1)}%`],
  labour_productivity: ["労働生産性（円/人）", "Labour productivity (JPY per employee)", (v) => Math.round(v).toLocaleString(lang)],
};

function barPair(label: string, mine: number | null, peers: number | null, fmt: (v: number) => string): HTMLElement {
  const NS = "http://www.w3.org/2000/svg";
  const max = Math.max(Math.abs(mine ?? 0), Math.abs(peers ?? 0)) || 1;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 300 56");
  svg.setAttribute("class", "bars");
  svg.setAttribute("aria-hidden", "true");
  [[mine, "mine", 4], [peers, "peers", 30]].forEach(([v, cls, y]) => {
    const rect = document.createElementNS(NS, "rect");
    const w = v === null ? 0 : (Math.abs(v as number) / max) * 290;
    rect.setAttribute("x", "0"); rect.setAttribute("y", String(y)); rect.setAttribute("height", "22");
    rect.setAttribute("width", String(Math.max(w, 1))); rect.setAttribute("class", cls as string);
    svg.append(rect);
  });
  const show = (v: number | null) => (v === null || v === undefined ? "—" : fmt(v));
  return h("div", { class: "indicator" }, h("h2", {}, label), svg as unknown as HTMLElement,
    h("dl", {}, h("dt", { class: "mine" }, lang === "ja" ? "自社" : "Yours"), h("dd", {}, show(mine)),
      h("dt", { class: "peers" }, lang === "ja" ? "同業・同規模の中央値" : "Peer median"), h("dd", {}, show(peers))));
}

async function diagnosisPage(main: HTMLElement): Promise<string> {
  const title = lang === "ja" ? "経営診断（ローカルベンチマーク）" : "Management diagnosis (local benchmark)";
  if (needSignIn(main)) return title;
  main.append(h("h1", {}, title));
  const bid = businessId();
  if (!bid) { main.append(h("p", {}, t("no_recommendations"))); return title; }
  const d = await api(`recommend/businesses/${encodeURIComponent(bid)}/diagnosis`);
  main.append(h("p", {}, lang === "ja" ? `比較した同業・同規模の事業者: ${d.peers}` : `Peers compared: ${d.peers}`));
  for (const [key, [ja, en, fmt]] of Object.entries(INDICATORS)) {
    main.append(barPair(lang === "ja" ? ja : en, d.indicators[key] ?? null, d.peer_medians[key] ?? null, fmt));
  }
  if (d.sales_forecast_next_year) {
    main.append(h("p", { class: "lead" }, `${lang === "ja" ? "来期の売上予測" : "Sales forecast, next year"}: ${yen(d.sales_forecast_next_year)}`));
  }
  return title;
}

// --- who can see and do what for the business: delegations (R-ID-08) and consents (R-ID-04); revoke --------
async function accessPage(main: HTMLElement): Promise<string> {
  const title = lang === "ja" ? "データの共有と代行" : "Sharing and delegation";
  if (needSignIn(main)) return title;
  main.append(h("h1", {}, title));
  const bid = businessId();
  if (!bid) return title;
  const [dlgs, consents] = await Promise.all([api<any[]>(`identity/businesses/${encodeURIComponent(bid)}/delegations`),
    api<any[]>(`identity/businesses/${encodeURIComponent(bid)}/consents`)]);
  const revoke = (label: string, run: () => Promise<unknown>, done = lang === "ja" ? "取り消しました" : "Revoked") => h("button", { type: "button", onclick: async (ev: Event) => {
    const b = ev.target as HTMLButtonElement;
    try { await run(); b.parentElement?.querySelectorAll("button").forEach((x) => x !== b && x.remove()); b.replaceWith(notice("ok", done)); }
    catch (e) { b.after(notice("error", (e as Error).message)); }
  } }, label);
  main.append(h("h2", {}, lang === "ja" ? "代行を許可している支援機関" : "Institutions acting for you"),
    dlgs.length ? h("ul", { class: "inbox" }, ...dlgs.map((g) => h("li", {},
      h("p", {}, h("strong", {}, g.org_id), ` — ${g.scopes.join(", ")}`),
      h("p", { class: "hint" }, `${g.status} · ${lang === "ja" ? "期限" : "until"} ${new Date(g.expires_at * 1000).toLocaleDateString(lang)}`),
      g.status === "active" ? revoke(lang === "ja" ? "代行を取り消す" : "Revoke",
        () => api(`identity/delegations/${g.delegation_id}/revoke`, { method: "POST", json: {} })) : "")))
      : h("p", {}, "—"),
    h("h2", {}, lang === "ja" ? "データ連携を承諾した外部サービス" : "Services you let prefill your data"),
    consents.length ? h("ul", { class: "inbox" }, ...consents.map((c) => h("li", {},
      h("p", {}, h("strong", {}, c.client_name ?? c.client_id), ` — ${(c.fields ?? []).join(", ")}`),
      revoke(lang === "ja" ? "承諾を取り消す" : "Withdraw",
        () => api(`identity/businesses/${encodeURIComponent(bid)}/consents/${encodeURIComponent(c.client_id)}`, { method: "DELETE" })))))
      : h("p", {}, "—"));
  const asks = await api<any[]>(`identity/businesses/${encodeURIComponent(bid)}/disclosure-requests`);
  const act = (id: string, verb: string, label: string) => revoke(label,
    () => api(`identity/disclosure-requests/${id}/${verb}`, { method: "POST", json: {} }), `${label}: OK`);
  main.append(h("h2", {}, lang === "ja" ? "支援機関からのデータ開示依頼" : "Institutions asking to see your data"),
    asks.length ? h("ul", { class: "inbox" }, ...asks.map((d) => h("li", {},
      h("p", {}, h("strong", {}, d.org_name ?? d.org_id), ` — ${d.purpose}`), h("p", { class: "hint" }, d.status),
      ...(d.status === "pending" ? [act(d.request_id, "approve", lang === "ja" ? "承認する" : "Approve"),
                                   act(d.request_id, "reject", lang === "ja" ? "断る" : "Reject")]
        : d.status === "approved" ? [act(d.request_id, "revoke", lang === "ja" ? "承認を取り消す" : "Revoke")] : []))))
      : h("p", {}, "—"));
  return title;
}

export const businessPages: [RegExp, Page][] = [
  [/^#\/diagnosis$/, diagnosisPage], [/^#\/access$/, accessPage],
  [/^#\/profile$/, profile], [/^#\/recommendations$/, recommendations], [/^#\/programmes\/([^/]+)$/, programmePage],
  [/^#\/request$/, requestPage], [/^#\/dispatches$/, dispatches], [/^#\/dispatches\/([^/]+)$/, dispatchPage],
  [/^#\/rate\/([^/]+)$/, ratePage], [/^#\/experts\/([^/]+)$/, expertPage], [/^#\/inbox$/, inbox],
];
