/** Institution staff (route-A request, R-DSP-01), bureau and agency (frames, ledger, CSV; R-BUD-05), agency queues. */
import { api, download } from "../api";
import { hasRole, session } from "../auth";
import { field, h, input, notice, values } from "../dom";
import { lang, t } from "../i18n";
import type { Page } from "../main";
import { requestForm } from "./business";

function guard(main: HTMLElement, title: string): boolean {
  if (session()) return false;
  main.append(h("h1", {}, title), notice("error", t("need_sign_in")));
  return true;
}

function institutionRequest(main: HTMLElement): string {
  if (guard(main, t("request_a"))) return t("request_a");
  main.append(h("h1", {}, t("request_a")), requestForm(true, () => undefined));
  return t("request_a");
}

const yen = (n: number) => n.toLocaleString(lang);
/** What a ledger line moved (signed): an allocation's fee and travel, a share, a reservation, or the spending. */
function amount(e: any): number {
  if (e.kind === "allocation") return (e.fee ?? 0) + (e.travel ?? 0);
  if (e.kind === "share") return e.share ?? 0;
  if (e.kind === "reservation" || e.kind === "release") return e.reserved ?? 0;
  return (e.spent_fee ?? 0) + (e.spent_travel ?? 0);
}

async function frames(main: HTMLElement, preset = ""): Promise<string> {
  if (guard(main, t("frames"))) return t("frames");
  main.append(h("h1", {}, t("frames")));
  const out = h("div", {});
  const csvOut = h("div", {});
  main.append(h("p", {}, h("button", { type: "button", onclick: async () => {
    try {
      const text = await download("budget/reports?by=member&format=csv", "budget-report.csv");
      csvOut.replaceChildren(notice("ok", `${t("report_csv")}: ${text.trim().split("\n").length - 1} rows`));
    } catch (e) { csvOut.replaceChildren(notice("error", (e as Error).message)); }
  } }, t("report_csv"))), csvOut);
  const form = h("form", { class: "inline" }, field(t("frame_id"), input("frame_id", { required: true, value: preset })),
    h("button", { type: "submit", class: "primary" }, t("show")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = values(form).frame_id.trim();
    try {
      const f = await api(`budget/frames/${encodeURIComponent(id)}`);
      const ledger = await api(`budget/frames/${encodeURIComponent(id)}/ledger`);
      out.replaceChildren(
        h("dl", { class: "figures" }, ...[["allocated", f.allocated], ["reserved", f.reserved], ["spent", f.spent], ["remaining", f.remaining]]
          .flatMap(([k, v]) => [h("dt", {}, t(k as any)), h("dd", {}, yen(v as number))])),
        h("h2", {}, t("ledger")),
        h("div", { class: "table-scroll" }, h("table", {},
          h("thead", {}, h("tr", {}, ...["#", t("at"), t("kind_col"), t("amount"), t("who"), t("reason")].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, ...ledger.entries.map((e: any) => h("tr", {}, h("td", {}, e.seq), h("td", {}, new Date(e.at).toLocaleString(lang)),
            h("td", {}, e.kind), h("td", {}, yen(amount(e))), h("td", {}, e.actor ?? ""), h("td", {}, e.why ?? "")))))),
        h("button", { type: "button", onclick: () => ledgerCsv(id, ledger.entries) }, t("export_csv")));
    } catch (e) { out.replaceChildren(notice("error", (e as Error).message)); }
  });
  main.append(form, out);
  if (preset) form.requestSubmit();
  return t("frames");
}

/** The ledger as CSV, from the same JSON the table shows (RFC 4180 quoting). */
function ledgerCsv(frameId: string, entries: any[]): void {
  const cols = ["seq", "at", "kind", "fee", "travel", "member_id", "dispatch_id", "actor", "why"];
  const q = (v: unknown) => { const s = v === null || v === undefined ? "" : String(v); return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
  const text = [cols.join(","), ...entries.map((e) => cols.map((c) => q(e[c])).join(","))].join("\r\n") + "\r\n";
  const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: `ledger-${frameId}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
}

async function agency(main: HTMLElement): Promise<string> {
  if (guard(main, t("reviews"))) return t("reviews");
  main.append(h("h1", {}, t("reviews")));
  if (!hasRole("agency")) return t("reviews");
  const apps: any[] = (await api("experts/reviews/applications")).applications;
  main.append(apps.length
    ? h("ul", {}, ...apps.map((a) => h("li", {}, `${a.name ?? ""} (${a.expert_id})`)))
    : h("p", {}, t("no_reviews")));
  const out = h("div", {});
  const confirm = h("form", {}, field(t("dispatch_id"), input("dispatch_id", { required: true })),
    h("button", { type: "submit", class: "primary" }, t("confirm")), out);
  confirm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const d = await api(`dispatch/requests/${encodeURIComponent(values(confirm).dispatch_id)}/confirm`, { method: "POST", json: {} });
      out.replaceChildren(notice("ok", `${t("confirmed")}: ${yen(d.fee ?? 0)} ${lang === "ja" ? "円" : "JPY"}`));
    } catch (e) { out.replaceChildren(notice("error", (e as Error).message)); }
  });
  main.append(h("h2", {}, t("confirm")), confirm);
  return t("reviews");
}

// --- disclosure requests (R-ANC-05): ask a business to see its data; read it only while approved -------------
async function disclosures(main: HTMLElement): Promise<string> {
  const title = lang === "ja" ? "事業者データの開示依頼" : "Data disclosure requests";
  if (guard(main, title)) return title;
  main.append(h("h1", {}, title));
  const out = h("div", {});
  const ask = h("form", {}, field(t("business_id"), input("business_id", { required: true })),
    field(lang === "ja" ? "目的" : "Purpose", input("purpose", { required: true, minlength: 3 })),
    h("button", { type: "submit", class: "primary" }, lang === "ja" ? "開示を依頼する" : "Ask"), out);
  const list = h("div", {});
  const refreshList = async () => {
    const items = await api<any[]>("identity/disclosure-requests");
    list.replaceChildren(items.length ? h("ul", { class: "inbox" }, ...items.map((d) => {
      const li = h("li", {}, h("p", {}, h("strong", {}, d.business_id), ` — ${d.purpose}`),
        h("p", { class: `hint status-${d.status}` }, d.status));
      if (d.status === "approved") {
        li.append(h("button", { type: "button", onclick: async () => {
          const prof = await api(`identity/disclosure-requests/${d.request_id}/profile`);
          li.append(h("dl", {}, ...["name", "prefecture", "industry", "employees"].flatMap((k) => [h("dt", {}, k), h("dd", {}, String(prof[k] ?? "—"))])));
        } }, lang === "ja" ? "データを見る" : "See the data"));
      }
      return li;
    })) : h("p", {}, "—"));
  };
  ask.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("identity/disclosure-requests", { method: "POST", json: values(ask) });
      out.replaceChildren(notice("ok", lang === "ja" ? "依頼しました" : "Asked"));
      await refreshList();
    } catch (e) { out.replaceChildren(notice("error", (e as Error).message)); }
  });
  await refreshList();
  main.append(ask, h("h2", {}, lang === "ja" ? "依頼の一覧" : "Your requests"), list);
  return title;
}

export const staffPages: [RegExp, Page][] = [
  [/^#\/institution\/disclosures$/, disclosures],
  [/^#\/institution\/request$/, institutionRequest], [/^#\/frames$/, (m) => frames(m)], [/^#\/frames\/([^/]+)$/, frames],
  [/^#\/agency$/, agency],
];
