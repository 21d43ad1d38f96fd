/**
 * Sign-in with our identity provider: OpenID Connect authorization code + PKCE (S256), as a public first-party
 * client. The tokens live in sessionStorage (this tab only) and are sent only to our own gateway.
 */
const KEY = "smeportal.session";
const PENDING = "smeportal.login";

export interface Claims {
  sub: string;
  roles: string[];
  biz?: { id: string; role: string }[];
  orgs?: { org_id: string; platform_id?: string; member_role?: string; rights?: string[] }[];
  dlg?: { id: string; business_id: string; org_id: string; scopes: string[]; exp: number }[];
  bureau_id?: string;
  exp: number;
}

interface Session { access: string; refresh?: string; idToken?: string; claims: Claims; name?: string }

let config: { client_id: string } | null = null;

export async function loadConfig(): Promise<{ client_id: string }> {
  if (!config) {
    const r = await fetch("/config.json", { cache: "no-store" });
    if (!r.ok) throw new Error("the portal is not configured (no /config.json)");
    config = await r.json();
  }
  return config!;
}

const redirectUri = () => `${location.origin}/`;

function b64url(bytes: Uint8Array): string {
  let s = "";
  bytes.forEach((b) => { s += String.fromCharCode(b); });
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decode(jwt: string): Record<string, any> {
  const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
}

export function session(): Session | null {
  const raw = sessionStorage.getItem(KEY);
  if (!raw) return null;
  const s = JSON.parse(raw) as Session;
  return s.claims.exp * 1000 > Date.now() || s.refresh ? s : null;
}

function save(tokens: { access_token: string; refresh_token?: string; id_token?: string }): Session {
  const old = session();
  const s: Session = {
    access: tokens.access_token, refresh: tokens.refresh_token ?? old?.refresh, idToken: tokens.id_token ?? old?.idToken,
    claims: decode(tokens.access_token) as Claims,
  };
  s.name = s.idToken ? decode(s.idToken).name : old?.name;
  sessionStorage.setItem(KEY, JSON.stringify(s));
  return s;
}

/** Sends the browser to the provider's login page with a fresh state and PKCE challenge. */
export async function signIn(returnTo = location.hash || "#/"): Promise<void> {
  const { client_id } = await loadConfig();
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, returnTo }));
  const q = new URLSearchParams({
    client_id, redirect_uri: redirectUri(), response_type: "code", scope: "openid", state,
    code_challenge: challenge, code_challenge_method: "S256",
  });
  location.assign(`/api/identity/authorize?${q}`);
}

/** On the way back from the provider: swaps the code for tokens. Returns where to go next, or null if not a callback. */
export async function completeSignIn(): Promise<string | null> {
  const q = new URLSearchParams(location.search);
  if (!q.has("code") && !q.has("error")) return null;
  history.replaceState(null, "", `${location.pathname}${location.hash}`);  // the code must not stay in the address bar
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  if (q.has("error")) throw new Error(q.get("error_description") || q.get("error")!);
  if (!pending || pending.state !== q.get("state")) throw new Error("the sign-in answer does not match this tab's request");
  const { client_id } = await loadConfig();
  const r = await fetch("/api/identity/token", {
    method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code: q.get("code")!, redirect_uri: redirectUri(),
                                client_id, code_verifier: pending.verifier }),
  });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error_description || "sign-in failed");
  save(body);
  return pending.returnTo || "#/";
}

/** New tokens from the refresh token: what changed since sign-in (e.g. a business just registered) is in them. */
export async function refresh(): Promise<boolean> {
  const s = session();
  if (!s?.refresh) return false;
  const { client_id } = await loadConfig();
  const r = await fetch("/api/identity/token", {
    method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: s.refresh, client_id }),
  });
  if (!r.ok) { sessionStorage.removeItem(KEY); return false; }
  save(await r.json());
  return true;
}

export async function signOut(): Promise<void> {
  const s = session();
  sessionStorage.removeItem(KEY);
  if (s?.refresh) {
    const { client_id } = await loadConfig();
    await fetch("/api/identity/revoke", {
      method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: s.refresh, client_id }),
    }).catch(() => undefined);
  }
}

export const hasRole = (role: string) => !!session()?.claims.roles?.includes(role);
export const businessId = () => session()?.claims.biz?.[0]?.id ?? null;
