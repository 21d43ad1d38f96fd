"""Identity benchmark (not a test): access-token validation throughput and login latency.

    uv run --frozen python bench/identity.py                 # in-process, a few seconds
    uv run --frozen python bench/identity.py --full          # 10x the iterations
    uv run --frozen python bench/identity.py --url http://127.0.0.1:8080/api/identity --email a@b.jp --password ...
        # also over HTTP against a running identity (directly or through the gateway): login (code + PKCE) latency
        # and authenticated requests per second (every request validates the token)

In-process figures are measured next to a baseline from the same run: token validation (RS256 signature,
audience, expiry, as every service does) against decoding the same token without checking it, and a login's
password check (argon2id) against a SHA-256 digest of the same input.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity_service import secrets
from identity_service.keys import KeySet
from identity_service.tokens import TokenIssuer


def _issuer() -> TokenIssuer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return TokenIssuer(KeySet(pem, []), "https://bench.example", 300)


def _rate(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t)


def _latencies(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return sorted(out)


def _pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def in_process(scale: int) -> None:
    issuer = _issuer()
    orgs = [{"org_id": "org-1", "platform_id": "pf-1", "member_role": "dispatch_member",
             "rights": ["joint_activities", "manage_budget", "recommend_experts", "request_dispatch"]}]
    token = issuer.access_token(sub="acc-1", client_id="portal", scopes=["openid"], roles=["institution"], orgs=orgs)
    validate = _rate(lambda: issuer.verify(token), 2000 * scale)
    baseline = _rate(lambda: jwt.decode(token, options={"verify_signature": False}), 2000 * scale)
    print(f"token validation (RS256 + aud/exp/iss): {validate:10.0f} tokens/s per core")
    print(f"baseline, decode without checks:        {baseline:10.0f} tokens/s per core   ratio {validate / baseline:.3f}")

    stored = secrets.hash_password("correct horse battery 9")
    login = _latencies(lambda: secrets.password_ok(stored, "correct horse battery 9"), 20 * scale)
    digest = _latencies(lambda: hashlib.sha256(b"correct horse battery 9").hexdigest(), 20 * scale)
    print(f"login password check (argon2id): p50 {_pct(login, .5):7.1f} ms  p95 {_pct(login, .95):7.1f} ms")
    print(f"baseline, SHA-256 of the input:  p50 {_pct(digest, .5):7.4f} ms   ratio {_pct(login, .5) / max(_pct(digest, .5), 1e-6):.0f}x")


async def over_http(url: str, email: str, password: str, client_id: str, redirect: str, scale: int) -> None:
    import httpx
    from urllib.parse import parse_qs, urlsplit

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        latencies, token = [], None
        for _ in range(5 * scale):
            verifier = base64.urlsafe_b64encode(os.urandom(48)).rstrip(b"=").decode()
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            t = time.perf_counter()
            r = await http.post("/authorize", data={"email": email, "password": password, "client_id": client_id,
                                                    "redirect_uri": redirect, "code_challenge": challenge})
            code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
            tok = await http.post("/token", data={"grant_type": "authorization_code", "code": code,
                                                  "redirect_uri": redirect, "client_id": client_id,
                                                  "code_verifier": verifier})
            latencies.append((time.perf_counter() - t) * 1000)
            token = tok.json()["access_token"]
        latencies.sort()
        print(f"HTTP login (authorize + token): p50 {_pct(latencies, .5):.1f} ms  p95 {_pct(latencies, .95):.1f} ms")
        auth = {"authorization": f"Bearer {token}"}
        n = 200 * scale
        t = time.perf_counter()
        await asyncio.gather(*(http.get("/accounts/me", headers=auth) for _ in range(n)))
        rate = n / (time.perf_counter() - t)
        t = time.perf_counter()
        await asyncio.gather(*(http.get("/healthz") for _ in range(n)))
        base = n / (time.perf_counter() - t)
        print(f"authenticated requests: {rate:.0f}/s; unauthenticated /healthz baseline {base:.0f}/s   ratio {rate / base:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--url")
    ap.add_argument("--email")
    ap.add_argument("--password")
    ap.add_argument("--client-id")
    ap.add_argument("--redirect-uri", default="http://127.0.0.1:9/callback")
    a = ap.parse_args()
    scale = 10 if a.full else 1
    in_process(scale)
    if a.url:
        asyncio.run(over_http(a.url, a.email, a.password, a.client_id, a.redirect_uri, scale))


if __name__ == "__main__":
    main()
