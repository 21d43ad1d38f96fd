"""Loads demo data through the gateway (idempotent) and prints a development token to try the API with.

usage: .venv/bin/python deploy/local/demo.py [--token-only]      env: GATEWAY_PORT, VAR_DIR
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import jwt

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("VAR_DIR") or ROOT / "var")
GATEWAY = f"http://127.0.0.1:{os.environ.get('GATEWAY_PORT', '8080')}"

DEMO_BUSINESSES = [
    {"corporate_number": "7000012050002", "name": "熊本精密工業株式会社", "prefecture": "熊本県", "industry": "製造業", "employees": 48},
    {"corporate_number": "4000012090001", "name": "みなと商店株式会社", "prefecture": "東京都", "industry": "小売業", "employees": 7},
    {"corporate_number": None, "name": "山田 太郎 (個人事業)", "prefecture": "北海道", "industry": "飲食業", "employees": 2},
]


def dev_token(sub: str = "demo-operator", roles=("operator",), ttl: int = 3600) -> str:
    """A token signed with the development key (var/keys) — only until the identity service issues real ones."""
    now = int(time.time())
    claims = {"sub": sub, "roles": list(roles), "aud": "smeportal", "iss": "smeportal-dev", "iat": now, "exp": now + ttl}
    return jwt.encode(claims, (VAR / "keys" / "jwt-private.pem").read_text(), algorithm="RS256")


def main() -> None:
    token = dev_token()
    if "--token-only" in sys.argv:
        print(token)
        return
    headers = {"authorization": f"Bearer {token}"}
    loaded = 0
    for b in DEMO_BUSINESSES:
        if b["corporate_number"] is None and loaded:
            continue  # sole proprietors have no natural key: load them only on the first run
        r = httpx.post(f"{GATEWAY}/api/identity/businesses", json=b, headers=headers, timeout=10)
        if r.status_code == 201:
            loaded += 1
        elif r.status_code != 409:
            sys.exit(f"demo data: {r.status_code} {r.text}")
    print(f"demo data: {loaded} new businesses (of {len(DEMO_BUSINESSES)}); operator token for 1 h:\n"
          f"  export TOKEN=$(.venv/bin/python deploy/local/demo.py --token-only)\n"
          f"  curl -H \"Authorization: Bearer $TOKEN\" {GATEWAY}/api/recommend/businesses/corp-7000012050002")


if __name__ == "__main__":
    main()
