/** The public API through the gateway, with the signed-in user's token. Errors are problem documents. */
import { refresh, session } from "./auth";

export class ApiError extends Error {
  constructor(public status: number, message: string, public body: any) { super(message); }
}

export async function api<T = any>(path: string, init: RequestInit & { json?: unknown } = {}, retried = false): Promise<T> {
  const headers = new Headers(init.headers);
  const s = session();
  if (s) headers.set("authorization", `Bearer ${s.access}`);
  let body = init.body;
  if (init.json !== undefined) { headers.set("content-type", "application/json"); body = JSON.stringify(init.json); }
  const r = await fetch(`/api/${path}`, { ...init, headers, body });
  if (r.status === 401 && !retried && s?.refresh && (await refresh())) return api(path, init, true);
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const detail = typeof data === "object" ? (data.detail || data.title || data.error_description) : data;
    throw new ApiError(r.status, typeof detail === "string" ? detail : JSON.stringify(detail), data);
  }
  return data as T;
}

/** A file download of an authenticated GET (the CSV export): the browser saves it under `filename`. */
export async function download(path: string, filename: string): Promise<string> {
  const s = session();
  const r = await fetch(`/api/${path}`, { headers: s ? { authorization: `Bearer ${s.access}` } : {} });
  if (!r.ok) throw new ApiError(r.status, await r.text(), null);
  const text = await r.text();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  return text;
}
