/** Pages for everyone: the home page (a dashboard once signed in) and sign-up. */
import { api } from "../api";
import { hasRole, session, signIn } from "../auth";
import { field, h, input, notice, select, values } from "../dom";
import { t } from "../i18n";

export function home(main: HTMLElement): string {
  const s = session();
  main.append(h("h1", {}, s ? `${t("welcome")}, ${s.name ?? ""}` : t("app")), h("p", { class: "lead" }, t("tagline")),
    h("p", {}, t("intro")));
  if (!s) {
    main.append(h("div", { class: "actions" },
      h("button", { type: "button", class: "primary", onclick: () => signIn("#/") }, t("sign_in")),
      h("a", { href: "#/signup", class: "button" }, t("sign_up"))));
    return t("home");
  }
  const cards: [string, string][] = [];
  if (hasRole("business") || hasRole("founder")) {
    cards.push(["#/profile", t("profile")], ["#/recommendations", t("recommendations")], ["#/request", t("request")],
      ["#/dispatches", t("dispatches")], ["#/inbox", t("inbox")]);
  }
  if (hasRole("expert")) cards.push(["#/visits", t("visit_title")], ["#/expert/profile", t("expert_page")]);
  if (hasRole("institution")) cards.push(["#/institution/request", t("request_a")]);
  if (hasRole("bureau") || hasRole("agency")) cards.push(["#/frames", t("frames")]);
  if (hasRole("agency")) cards.push(["#/agency", t("reviews")]);
  main.append(h("ul", { class: "cards" }, ...cards.map(([href, label]) => h("li", {}, h("a", { href }, label)))));
  return t("home");
}

export function signup(main: HTMLElement): string {
  const out = h("div", {});
  const form = h("form", { novalidate: false },
    field(t("real_name"), input("real_name", { required: true, autocomplete: "name" })),
    field(t("email"), input("email", { type: "email", required: true, autocomplete: "email" })),
    field(t("password"), input("password", { type: "password", required: true, minlength: 12, autocomplete: "new-password" }), t("password_hint")),
    field(t("kind"), select("kind", [["business", t("kind_business")], ["founder", t("kind_founder")],
      ["expert", t("kind_expert")], ["institution", t("kind_institution")]])),
    h("button", { type: "submit", class: "primary" }, t("signup_submit")), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("identity/accounts", { method: "POST", json: values(form) });
      form.replaceChildren(notice("ok", t("signup_done")),
        h("button", { type: "button", class: "primary", onclick: () => signIn("#/profile") }, t("sign_in")));
    } catch (e) {
      out.replaceChildren(notice("error", (e as Error).message));
    }
  });
  main.append(h("h1", {}, t("signup_title")), form);
  return t("signup_title");
}
