/** The expert's pages, made for a phone at a visit: check-in/out with time and position (R-ANC-01),
 * a signed declaration for a missing or corrected time, and the report (R-DSP-09). */
import { api } from "../api";
import { session } from "../auth";
import { field, h, input, notice, values } from "../dom";
import { lang, statusText, t } from "../i18n";
import type { Page } from "../main";

function position(): Promise<{ lat: number; lon: number }> {
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) { reject(new Error(t("position_unknown"))); return; }
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude }),
      () => reject(new Error(t("position_unknown"))), { enableHighAccuracy: true, timeout: 10000 });
  });
}

const OPEN = "smeportal.openVisit";

async function visits(main: HTMLElement, preset = ""): Promise<string> {
  if (!session()) { main.append(h("h1", {}, t("sign_in")), notice("error", t("need_sign_in"))); return t("visit_title"); }
  main.append(h("h1", {}, t("visit_title")));
  const out = h("div", { "aria-live": "polite" });
  const open = JSON.parse(localStorage.getItem(OPEN) || "null");
  const dispatchInput = input("dispatch_id", { required: true, value: preset || open?.dispatch_id || "", autocomplete: "off" });
  const did = () => dispatchInput.value.trim();
  const place = input("place", { value: "" });
  const say = (kind: "ok" | "error", text: string) => out.replaceChildren(notice(kind, text));
  const checkIn = h("button", { type: "button", class: "primary big", onclick: async () => {
    try {
      const loc = { ...(await position()), place: place.value };
      const v = await api(`dispatch/requests/${encodeURIComponent(did())}/visits`, { method: "POST", json: { location: loc } });
      localStorage.setItem(OPEN, JSON.stringify({ dispatch_id: did(), visit_id: v.visit_id }));
      say("ok", `${t("checked_in")} ${new Date().toLocaleTimeString(lang)} (${loc.lat.toFixed(4)}, ${loc.lon.toFixed(4)})`);
    } catch (e) { say("error", (e as Error).message); }
  } }, t("check_in"));
  const checkOut = h("button", { type: "button", class: "big", onclick: async () => {
    try {
      const cur = JSON.parse(localStorage.getItem(OPEN) || "null");
      if (!cur) throw new Error(t("check_in"));
      const loc = { ...(await position()), place: place.value };
      await api(`dispatch/requests/${encodeURIComponent(cur.dispatch_id)}/visits/${encodeURIComponent(cur.visit_id)}/check-out`,
        { method: "POST", json: { location: loc } });
      localStorage.removeItem(OPEN);
      say("ok", `${t("checked_out")} ${new Date().toLocaleTimeString(lang)} (${loc.lat.toFixed(4)}, ${loc.lon.toFixed(4)})`);
    } catch (e) { say("error", (e as Error).message); }
  } }, t("check_out"));
  main.append(field(t("dispatch_id"), dispatchInput), field(t("position"), place),
    h("div", { class: "actions" }, checkIn, checkOut), out);

  // declaration (R-ANC-01): a signed statement of a visit's real time
  const dOut = h("div", {});
  const decl = h("form", {},
    field(t("start"), input("start", { type: "datetime-local", required: true })),
    field(t("end"), input("end", { type: "datetime-local", required: true })),
    field(t("reason"), input("reason", { required: true, minlength: 5 })),
    field(t("signature"), input("signature", { required: true, autocomplete: "name" })),
    h("button", { type: "submit" }, t("declare")), dOut);
  decl.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(decl);
    try {
      await api(`dispatch/requests/${encodeURIComponent(did())}/visits/declarations`, { method: "POST", json: {
        start: new Date(v.start).toISOString(), end: new Date(v.end).toISOString(), reason: v.reason, signed: true, signature: v.signature } });
      dOut.replaceChildren(notice("ok", t("declared")));
    } catch (e) { dOut.replaceChildren(notice("error", (e as Error).message)); }
  });
  // report (R-DSP-09)
  const rOut = h("div", {});
  const report = h("form", {},
    field(t("summary"), h("textarea", { name: "summary", required: true, minlength: 10, rows: 4 })),
    field(t("proposals"), h("textarea", { name: "proposals", rows: 2 })),
    field(t("follow_up"), h("textarea", { name: "follow_up", rows: 2 })),
    h("button", { type: "submit" }, t("file_report")), rOut);
  report.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api(`dispatch/requests/${encodeURIComponent(did())}/report`, { method: "POST", json: values(report) });
      rOut.replaceChildren(notice("ok", t("reported")));
    } catch (e) { rOut.replaceChildren(notice("error", (e as Error).message)); }
  });
  // co-signing a business's direct request (R-DSP-02c): it is screened once the expert signs
  const cOut = h("div", {});
  const cosign = h("button", { type: "button", onclick: async () => {
    try {
      const d = await api(`dispatch/requests/${encodeURIComponent(did())}/cosign`, { method: "POST", json: {} });
      cOut.replaceChildren(notice("ok", `${t("cosigned")}: ${d.dispatch_id} — ${statusText(d.status)}`));
    } catch (e) { cOut.replaceChildren(notice("error", (e as Error).message)); }
  } }, t("cosign"));
  main.append(h("section", { "aria-labelledby": "co-h" }, h("h2", { id: "co-h" }, t("cosign_title")), h("p", { class: "hint" }, t("cosign_hint")), cosign, cOut));
  main.append(h("section", { "aria-labelledby": "decl-h" }, h("h2", { id: "decl-h" }, t("declaration")), decl),
    h("section", { "aria-labelledby": "rep-h" }, h("h2", { id: "rep-h" }, t("report")), report));
  return t("visit_title");
}

// --- the expert's own page: profile and availability, editable at any time (R-EX-03) ----------------------
const FIELDS = ["management", "finance", "tax", "legal", "ip", "sales_channels", "product_development", "it_dx",
  "business_succession", "hr", "overseas", "manufacturing", "startup", "other"];

async function ownPage(main: HTMLElement): Promise<string> {
  if (!session()) { main.append(h("h1", {}, t("sign_in")), notice("error", t("need_sign_in"))); return t("expert_page"); }
  main.append(h("h1", {}, t("expert_page")));
  const me = await api("experts/experts/me");
  const p = me.profile ?? {};
  main.append(h("p", {}, `${me.name} (${me.expert_id}) — ${t("status")}: ${me.status}`),
    h("p", {}, h("a", { href: `#/experts/${me.expert_id}` }, t("radar"))));
  const out = h("div", {});
  const list = (s: string) => s.split(/[,、]/).map((x) => x.trim()).filter(Boolean);
  const profile = h("form", {},
    field(t("introduction"), h("textarea", { name: "introduction", rows: 4 }, p.introduction ?? "")),
    field(t("qualifications"), input("qualifications", { value: (p.qualifications ?? []).join("、") })),
    h("fieldset", {}, h("legend", {}, t("fields")), ...FIELDS.map((f) => h("div", { class: "check" },
      h("input", { type: "checkbox", name: "fields", value: f, id: `fld-${f}`, checked: (p.fields ?? []).includes(f) }),
      h("label", { for: `fld-${f}` }, f.replace(/_/g, " "))))),
    field(t("prefecture"), input("regions", { value: (p.regions ?? []).join("、") })),
    h("button", { type: "submit", class: "primary" }, t("save")), out);
  profile.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fd = new FormData(profile);
    try {
      await api("experts/experts/me/profile", { method: "PUT", json: { ...p, introduction: String(fd.get("introduction") ?? ""),
        qualifications: list(String(fd.get("qualifications") ?? "")), fields: fd.getAll("fields").map(String),
        regions: list(String(fd.get("regions") ?? "")), expected_version: me.version } });
      out.replaceChildren(notice("ok", t("saved")));
    } catch (e) { out.replaceChildren(notice("error", (e as Error).message)); }
  });
  const aOut = h("div", {});
  const win = me.availability?.windows?.[0] ?? {};
  const availability = h("form", {},
    field(t("start"), input("start", { type: "date", value: win.start ?? "" })),
    field(t("end"), input("end", { type: "date", value: win.end ?? "" })),
    field(t("reason"), input("note", { value: me.availability?.note ?? "" })),
    h("button", { type: "submit" }, t("save")), aOut);
  availability.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(availability);
    try {
      await api("experts/experts/me/availability", { method: "PUT", json: { note: v.note,
        windows: v.start && v.end ? [{ start: v.start, end: v.end, note: v.note }] : [] } });
      aOut.replaceChildren(notice("ok", t("saved")));
    } catch (e) { aOut.replaceChildren(notice("error", (e as Error).message)); }
  });
  main.append(profile, h("section", { "aria-labelledby": "av-h" }, h("h2", { id: "av-h" }, t("availability")), availability));
  return t("expert_page");
}

export const expertPages: [RegExp, Page][] = [[/^#\/visits$/, (m) => visits(m)], [/^#\/visits\/([^/]+)$/, visits],
  [/^#\/expert\/profile$/, ownPage]];
