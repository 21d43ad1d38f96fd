"""The gateway follows identity's JWKS (R-EXT-04): HAProxy verifies each token with the key its `kid` names.

HAProxy 2.6 verifies RS256 only with key files it loaded when it read its configuration, so it cannot fetch a key
when a token names an unknown kid. Identity publishes each key a whole rotation period before signing with it;
this follower, running in the deny-list sync process next to HAProxy, polls the JWKS (JWT_JWKS_URL, every
GATEWAY_JWKS_POLL_SECONDS) and, when the set of keys changes, writes one public-key file per kid into
GATEWAY_JWKS_DIR and runs GATEWAY_RELOAD_COMMAND (deploy/local/gateway.sh reload): the configuration is rendered
again with one `jwt_verify` line per kid and HAProxy reloads without dropping a connection (master-worker mode,
listeners handed over). So the gateway holds the next key long before the first token signed with it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

log = logging.getLogger("gateway-keys")
_KID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what may go into a file name and an HAProxy ACL


def public_pems(jwks: dict) -> dict[str, str]:
    """kid -> public key PEM for each usable RS256 signing key of a JWKS document (others are skipped)."""
    out = {}
    for k in jwks.get("keys", ()) if isinstance(jwks, dict) else ():
        if not (isinstance(k, dict) and k.get("kty") == "RSA" and isinstance(k.get("kid"), str)
                and _KID.fullmatch(k["kid"]) and k.get("use", "sig") == "sig"):
            continue
        try:
            key = RSAAlgorithm.from_jwk(json.dumps(k))
        except Exception:  # a malformed key is one key less, never a stopped gateway
            continue
        out[k["kid"]] = key.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return out


def write_keys(directory: Path, pems: dict[str, str]) -> bool:
    """Makes `directory` hold exactly `pems` as `<kid>.pem`; True if anything changed."""
    directory.mkdir(parents=True, exist_ok=True)
    held = {p.stem: p.read_text() for p in directory.glob("*.pem")}
    if held == pems:
        return False
    for kid, pem in pems.items():
        if held.get(kid) != pem:
            tmp = directory / f".{kid}.tmp"
            tmp.write_text(pem)
            tmp.replace(directory / f"{kid}.pem")
    for kid in held.keys() - pems.keys():
        (directory / f"{kid}.pem").unlink(missing_ok=True)
    return True


class KeyFollower:
    def __init__(self, url: str, directory: str, reload_command: str, poll_seconds: float = 2.0):
        self.url, self.dir, self.reload_command, self.poll = url, Path(directory), reload_command, poll_seconds
        self.reloads = 0

    async def once(self, http: httpx.AsyncClient) -> None:
        r = await http.get(self.url)
        r.raise_for_status()
        pems = public_pems(r.json())
        if pems and write_keys(self.dir, pems):
            log.info("signing keys changed", extra={"fields": {"kids": sorted(pems)}})
            await self._reload()

    async def _reload(self) -> None:
        if not self.reload_command:
            return
        proc = await asyncio.create_subprocess_shell(self.reload_command, stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        self.reloads += 1
        if proc.returncode:
            log.error("gateway reload failed", extra={"fields": {"rc": proc.returncode, "output": out.decode()[-500:]}})

    async def run(self) -> None:
        failing = False
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                try:
                    await self.once(http)
                    failing = False
                except (httpx.HTTPError, ValueError) as e:
                    if not failing:  # logged once per outage, not every poll
                        log.warning("JWKS not readable; the gateway keeps the keys it has",
                                    extra={"fields": {"url": self.url, "error": repr(e)[:300]}})
                    failing = True
                await asyncio.sleep(self.poll)
