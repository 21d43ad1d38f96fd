"""Serves the portal's built bundle (web/dist) on loopback for the gateway, which routes every path outside
/api/ and /.well-known/ here; and /config.json, the OAuth client id the deploy registered for the portal.

A static server is all the front end needs: it calls only the public API, through the same gateway, with the
signed-in user's token. Standard library only (no framework): it reads files and sets security headers.
usage: python web/serve.py    env: WEB_PORT (8110), WEB_DIST (web/dist), WEB_CONFIG_FILE (a JSON file)
"""
from __future__ import annotations

import http.server
import mimetypes
import os
from pathlib import Path

DIST = Path(os.environ.get("WEB_DIST") or Path(__file__).parent / "dist").resolve()
CONFIG = os.environ.get("WEB_CONFIG_FILE", "")
# Everything from our own origin only; the app sets no inline script or style; nobody may frame the portal.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "smeportal-web"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == "/config.json":
            try:
                data, kind = Path(CONFIG).read_bytes(), "application/json"
            except OSError:
                return self._send(503, b'{"detail":"the portal has no registered client yet"}', "application/json", body)
            return self._send(200, data, kind, body, cache="no-store")
        file = (DIST / path.lstrip("/")).resolve()
        if not file.is_relative_to(DIST) or not file.is_file():
            if path.startswith("/assets/"):
                return self._send(404, b"not found", "text/plain; charset=utf-8", body)
            file = DIST / "index.html"  # the app's own routes live in the fragment; any other path gets the app
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
            kind += "; charset=utf-8"
        # hashed asset names never change content; the page itself is always checked again
        cache = "public, max-age=31536000, immutable" if path.startswith("/assets/") else "no-cache"
        self._send(200, file.read_bytes(), kind, body, cache=cache)

    def _send(self, status: int, data: bytes, kind: str, body: bool, cache: str = "no-cache") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")  # the sign-in code must never leave in a Referer
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:  # the gateway's access log already has every request
        pass


def main() -> None:
    if not (DIST / "index.html").is_file():
        raise SystemExit(f"no built bundle in {DIST}: run `npm ci && npm run build` in web/ (deploy/local/web.sh build)")
    port = int(os.environ.get("WEB_PORT", "8110"))
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
