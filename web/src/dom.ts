/** Small DOM helpers: every text goes in as text (never as HTML), so API data cannot inject markup. */
type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, ...children);
  return el;
}

export function append(el: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

let uid = 0;

/** A labelled form control; the label is always visible and tied to the control (screen readers read it). */
export function field(label: string, control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, hint?: string): HTMLElement {
  control.id ||= `f${++uid}`;
  const parts: Child[] = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hid = `${control.id}-hint`;
    control.setAttribute("aria-describedby", hid);
    parts.push(h("small", { id: hid, class: "hint" }, hint));
  }
  return h("div", { class: "field" }, ...parts);
}

export function input(name: string, attrs: Attrs = {}): HTMLInputElement {
  return h("input", { name, type: "text", ...attrs });
}

export function select(name: string, options: [string, string][], attrs: Attrs = {}): HTMLSelectElement {
  return h("select", { name, ...attrs }, ...options.map(([v, l]) => h("option", { value: v }, l)));
}

/** Reads a form's named controls as strings. */
export function values(form: HTMLFormElement): Record<string, string> {
  const out: Record<string, string> = {};
  new FormData(form).forEach((v, k) => { out[k] = String(v); });
  return out;
}

/** Announces a message to screen readers through the polite live region. */
export function announce(text: string): void {
  const live = document.getElementById("live");
  if (live) { live.textContent = ""; setTimeout(() => { live.textContent = text; }, 30); }
}

/** A message on the page: an error is an alert (read at once); success is read through the live region. */
export function notice(kind: "ok" | "error", text: string): HTMLElement {
  if (kind === "ok") announce(text);
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null }, text);
}
