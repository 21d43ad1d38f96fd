/** The portal's shell: header with menu and language switch, hash routes, focus and title on every page change. */
import "./style.css";
import { completeSignIn, hasRole, session, signIn, signOut } from "./auth";
import { h, notice } from "./dom";
import { lang, setLang, t } from "./i18n";
import { home, signup } from "./pages/public";
import { businessPages, ratingPopup } from "./pages/business";
import { expertPages } from "./pages/expert";
import { staffPages } from "./pages/staff";

export type Page = (main: HTMLElement, ...params: string[]) => Promise<string | void> | string | void;
const routes: [RegExp, Page][] = [
  [/^#?\/?$/, home], [/^#\/signup$/, signup], ...businessPages, ...expertPages, ...staffPages,
];

function header(): HTMLElement {
  const s = session();
  const link = (href: string, label: string) => h("li", {}, h("a", { href }, label));
  const items: HTMLElement[] = [link("#/", t("home"))];
  if (hasRole("business") || hasRole("founder")) {
    items.push(link("#/profile", t("profile")), link("#/recommendations", t("recommendations")), link("#/request", t("request")),
      link("#/dispatches", t("dispatches")), link("#/diagnosis", lang === "ja" ? "経営診断" : "Diagnosis"),
      link("#/access", lang === "ja" ? "共有と代行" : "Sharing"), link("#/inbox", t("inbox")));
  }
  if (hasRole("expert")) items.push(link("#/visits", t("visit_title")), link("#/expert/profile", t("expert_page")), link("#/inbox", t("inbox")));
  if (hasRole("institution")) items.push(link("#/institution/request", t("request")),
    link("#/institution/disclosures", lang === "ja" ? "開示依頼" : "Disclosures"), link("#/inbox", t("inbox")));
  if (hasRole("bureau") || hasRole("agency")) items.push(link("#/frames", t("frames")));
  if (hasRole("agency")) items.push(link("#/agency", t("reviews")));
  const langButton = h("button", { type: "button", class: "lang", lang: lang === "ja" ? "en" : "ja", "aria-label": t("lang_switch_label"),
    onclick: () => { setLang(lang === "ja" ? "en" : "ja"); render(); } }, t("lang_switch"));
  const account = s
    ? h("div", { class: "account" }, h("span", {}, `${t("signed_in_as")}: ${s.name ?? s.claims.sub}`),
        h("button", { type: "button", onclick: async () => { await signOut(); location.hash = "#/"; render(); } }, t("sign_out")))
    : h("div", { class: "account" }, h("button", { type: "button", onclick: () => signIn("#/") }, t("sign_in")),
        h("a", { href: "#/signup", class: "button" }, t("sign_up")));
  return h("div", { class: "bar" }, h("a", { href: "#/", class: "brand" }, t("app")),
    h("nav", { "aria-label": t("nav") }, h("ul", {}, ...items)), h("div", { class: "tools" }, langButton, account));
}

export async function render(): Promise<void> {
  document.documentElement.lang = lang;
  document.getElementById("top")!.replaceChildren(header());
  const main = document.getElementById("main")!;
  main.replaceChildren(h("p", { role: "status" }, t("loading")));
  const hash = location.hash || "#/";
  let title: string | void = t("not_found");
  const content = h("div", {});
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    try {
      title = await page(content, ...m.slice(1).map(decodeURIComponent));
    } catch (e) {
      content.replaceChildren(h("h1", {}, t("error")), notice("error", (e as Error).message));
      title = t("error");
    }
    break;
  }
  if (!content.firstChild) content.append(h("h1", {}, t("not_found")));
  main.replaceChildren(content);
  document.title = `${title || t("app")} | ${t("app")}`;
  // screen readers: the new page's heading gets focus, so its title is read out
  (main.querySelector("h1") as HTMLElement | null)?.setAttribute("tabindex", "-1");
  if (hash !== "#/" || moved) (main.querySelector("h1") as HTMLElement | null)?.focus();
  moved = true;
}
let moved = false;

window.addEventListener("hashchange", () => { render(); });
// the skip link moves focus to the content without touching the route (the routes live in the fragment)
document.querySelector(".skip")?.addEventListener("click", (ev) => {
  ev.preventDefault();
  document.getElementById("main")!.focus();
});

(async () => {
  setLang(lang);
  try {
    const next = await completeSignIn();
    if (next !== null) {
      history.replaceState(null, "", next);
      await render();
      await ratingPopup();  // R-RAT-03: at every login while a rating is owed
      return;
    }
  } catch (e) {
    document.getElementById("main")!.replaceChildren(h("h1", {}, t("signin_failed")), notice("error", (e as Error).message));
    document.getElementById("top")!.replaceChildren(header());
    return;
  }
  await render();
})();
