"""The developer portal's page of the platform's APIs (R-EXT-04): public, for anyone deciding to build a client.

It serves the merged documents `python -m servicekit.apidocs` writes into `apis/` (every service's OpenAPI paths
under the gateway's `/api/<service>`, every service's AsyncAPI channels) and a page that lists what a third-party
client may call: each operation with the scope its token needs, and the consent webhook it receives. Nothing here
is computed at request time but the page, once per process."""
from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

router = APIRouter(tags=["developers"])
APIS = Path(__file__).with_name("apis")
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@lru_cache(maxsize=2)
def document(name: str) -> dict:
    return json.loads((APIS / f"platform.{name}.json").read_text())


def partner_operations(openapi: dict) -> list[dict]:
    """(method, path, scopes, summary) of every operation a third-party client's scope opens, in path order."""
    out = []
    for path, ops in sorted(openapi["paths"].items()):
        for method, op in ops.items():
            scopes = sorted({s for req in op.get("security", []) for v in req.values() for s in v} - {"portal"})
            if scopes:
                out.append({"method": method.upper(), "path": path, "scopes": scopes, "summary": op.get("summary", "")})
    return out


@lru_cache(maxsize=1)
def page() -> str:
    openapi, asyncapi = document("openapi"), document("asyncapi")
    scheme = next(iter(openapi["components"]["securitySchemes"].values()))
    scopes = scheme["flows"]["authorizationCode"]["scopes"]
    rows = "".join(f"<tr><td><code>{o['method']}</code></td><td><code>{html.escape(o['path'])}</code></td>"
                   f"<td>{', '.join(f'<code>{html.escape(s)}</code>' for s in o['scopes'])}</td>"
                   f"<td>{html.escape(o['summary'])}</td></tr>" for o in partner_operations(openapi))
    scope_rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td></tr>"
                         for k, v in scopes.items() if k != "portal")
    hooks = "".join(f"<li><code>POST</code> {html.escape(k)}: {html.escape(v['post']['summary'])}. "
                    f"{html.escape(v['post']['description'])}</li>" for k, v in openapi.get("webhooks", {}).items())
    counts = (f"{len(openapi['paths'])} paths of {len({p.split('/')[2] for p in openapi['paths']})} services, "
              f"{len(asyncapi['channels'])} channels")
    return f"""<!doctype html><html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>開発者ポータル / Developer portal: APIs</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;line-height:1.5}}
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #888;padding:.3rem;text-align:left;vertical-align:top}}
code{{overflow-wrap:anywhere}}</style></head><body><main>
<h1>開発者ポータル: 提供API / Developer portal: the APIs</h1>
<p>外部サービスは事業者の同意の範囲でのみ呼び出せます。 A third-party client calls only the operations below, with a
token whose scope names them, issued for one service (<code>resource=urn:smeportal:&lt;service&gt;</code>), DPoP-bound
in production. Register an organisation and an application (<code>POST /api/identity/developer/orgs</code>) to get
sandbox credentials at once; production needs the agency's review against the security checklist.</p>
<h2>Operations a partner may call</h2>
<table><thead><tr><th scope="col">Method</th><th scope="col">Path</th><th scope="col">Scope</th>
<th scope="col">What it does</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Scopes</h2><table><thead><tr><th scope="col">Scope</th><th scope="col">Grants</th></tr></thead>
<tbody>{scope_rows}</tbody></table>
<h2>Webhooks</h2><ul>{hooks}</ul>
<h2>Authentication</h2><p>{html.escape(scheme.get("description", ""))} Discovery:
<a href="/.well-known/openid-configuration">/.well-known/openid-configuration</a>.</p>
<h2>The whole platform</h2><p>{counts}:
<a href="/api/identity/developers/openapi.json">OpenAPI 3.1 (every service, merged)</a> and
<a href="/api/identity/developers/asyncapi.json">AsyncAPI 3.0 (every service's events, merged)</a>.</p>
</main></body></html>"""


@router.get("/developers/apis", response_class=HTMLResponse, summary="The developer portal: the APIs a partner may "
            "call, with their scopes and the webhooks it receives (public)")
async def apis_page() -> HTMLResponse:
    return HTMLResponse(page(), headers={"Content-Security-Policy": CSP, "Cache-Control": "public, max-age=300"})


@router.get("/developers/openapi.json", summary="The platform's HTTP APIs as one OpenAPI 3.1 document (public)")
async def platform_openapi() -> JSONResponse:
    return JSONResponse(document("openapi"), headers={"Cache-Control": "public, max-age=300"})


@router.get("/developers/asyncapi.json", summary="The platform's events as one AsyncAPI 3.0 document (public)")
async def platform_asyncapi() -> JSONResponse:
    return JSONResponse(document("asyncapi"), headers={"Cache-Control": "public, max-age=300"})
