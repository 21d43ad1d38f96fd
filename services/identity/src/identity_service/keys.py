"""The identity service's signing keys (R-EXT-04): one active RS256 key, the next key published in the JWKS before it
signs anything, and the retired public keys that still verify tokens signed before a rotation.

Two sources:
- a key ring directory (JWT_KEY_DIR, what production and `make up` use): `<kid>.pem` private keys and `keyring.json`
  {"active": kid, "next": kid, "retired": [kid, ...]}. `python -m identity_service.keys rotate DIR` promotes the
  published next key to active, retires the old active one and publishes a new next key, replacing the manifest in
  one rename. Identity re-reads the manifest when it changes (checked at most once a second), so a rotation needs no
  restart, and every key signs only after a whole rotation period in the JWKS: verifiers that cache the JWKS already
  hold it, and the others fetch it on the unknown `kid`.
- fixed files (JWT_PRIVATE_KEY_FILE signs, JWT_NEXT_KEY_FILE published only, JWT_RETIRED_PUBLIC_KEY_FILES verify).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
import jwt
from jwt.algorithms import RSAAlgorithm

MANIFEST = "keyring.json"
KEEP_RETIRED = 2  # retired keys outlive every token they signed (access tokens live minutes, rotations are days apart)


def _thumbprint(jwk: dict) -> str:
    """RFC 7638 key id."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _jwk(public_key) -> dict:
    jwk = json.loads(RSAAlgorithm.to_jwk(public_key))
    jwk.update(kid=_thumbprint(jwk), use="sig", alg="RS256")
    return jwk


def _load(pem: str):
    if "PRIVATE KEY" in pem:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    return serialization.load_pem_public_key(pem.encode())


@dataclass
class Ring:
    """One immutable state of the keys: the signer, and every public key the JWKS publishes (signer first)."""

    private_key: object
    published: list[dict]

    @classmethod
    def of(cls, active_pem: str, next_pems: list[str] = (), retired_pems: list[str] = ()) -> "Ring":
        private = _load(active_pem)
        others = [_jwk(_load(p).public_key() if "PRIVATE" in p else _load(p)) for p in [*next_pems, *retired_pems]]
        return cls(private, [_jwk(private.public_key()), *others])

    @property
    def active_kid(self) -> str:
        return self.published[0]["kid"]


@dataclass
class KeySet:
    private_pem: str = ""
    retired_public_pems: list[str] = field(default_factory=list)
    next_pems: list[str] = field(default_factory=list)
    key_dir: Path | None = None
    _ring: Ring | None = None
    _stamp: float = -1.0
    _checked: float = 0.0

    @classmethod
    def from_settings(cls, settings) -> "KeySet":
        """JWT_KEY_DIR (a rotating ring), else JWT_PRIVATE_KEY_FILE with JWT_NEXT_KEY_FILE and
        JWT_RETIRED_PUBLIC_KEY_FILES (comma-separated), from the identity settings."""
        if settings.jwt_key_dir:
            return cls(key_dir=Path(settings.jwt_key_dir))
        private = Path(settings.jwt_private_key_file).read_text()
        retired = [Path(p).read_text() for p in settings.jwt_retired_public_key_files.split(",") if p]
        nxt = [Path(p).read_text() for p in settings.jwt_next_key_file.split(",") if p]
        return cls(private, retired, nxt)

    @property
    def ring(self) -> Ring:
        if self.key_dir is None:
            if self._ring is None:
                self._ring = Ring.of(self.private_pem, self.next_pems, self.retired_public_pems)
            return self._ring
        now = time.monotonic()
        if self._ring is None or now - self._checked >= 1.0:
            self._checked = now
            manifest = self.key_dir / MANIFEST
            stamp = manifest.stat().st_mtime_ns
            if stamp != self._stamp:
                try:
                    m = json.loads(manifest.read_text())
                    pem = lambda kid: (self.key_dir / f"{kid}.pem").read_text()  # noqa: E731
                    self._ring = Ring.of(pem(m["active"]), [pem(m["next"])] if m.get("next") else [],
                                         [pem(k) for k in m.get("retired", [])])
                    self._stamp = stamp
                except FileNotFoundError:  # read while a rotation replaced the files: the last ring serves until the
                    if self._ring is None:  # next check (at most a second)
                        raise
        return self._ring

    def sign(self, claims: dict, headers: dict | None = None) -> str:
        """`claims` signed by the active key, its `kid` in the header, both from one state of the ring (read apart, a
        re-read between them signed with the old key under the new key's kid: a token nobody could verify)."""
        ring = self.ring
        return jwt.encode(claims, ring.private_key, algorithm="RS256", headers={**(headers or {}), "kid": ring.active_kid})

    @property
    def private_key(self):
        return self.ring.private_key

    @property
    def active_kid(self) -> str:
        return self.ring.active_kid

    @property
    def jwks(self) -> dict:
        return {"keys": list(self.ring.published)}

    async def key(self, kid: str | None):
        """servicekit.auth's key lookup, answered from the ring itself."""
        return self.public_key_for(kid)

    def public_key_for(self, kid: str | None):
        for jwk in self.ring.published:
            if jwk["kid"] == kid:
                return RSAAlgorithm.from_jwk(json.dumps(jwk))
        return None


def _new_key(key_dir: Path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = _jwk(key.public_key())["kid"]
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = key_dir / f"{kid}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return kid


def _write_manifest(key_dir: Path, manifest: dict) -> None:
    tmp = key_dir / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, key_dir / MANIFEST)


def init(key_dir: Path, active_pem: Path | None = None) -> dict:
    """A key ring with an active key (`active_pem` if given, e.g. the existing dev key) and a published next key;
    an existing ring is left as it is."""
    key_dir.mkdir(parents=True, exist_ok=True)
    if (key_dir / MANIFEST).exists():
        return json.loads((key_dir / MANIFEST).read_text())
    if active_pem is not None:
        kid = _jwk(_load(active_pem.read_text()).public_key())["kid"]
        (key_dir / f"{kid}.pem").write_text(active_pem.read_text())
        os.chmod(key_dir / f"{kid}.pem", 0o600)
    else:
        kid = _new_key(key_dir)
    manifest = {"active": kid, "next": _new_key(key_dir), "retired": []}
    _write_manifest(key_dir, manifest)
    return manifest


def rotate(key_dir: Path) -> dict:
    """The published next key signs from now on; the old active one only verifies; a new next key is published."""
    m = json.loads((key_dir / MANIFEST).read_text())
    retired = [m["active"], *m.get("retired", [])]
    manifest = {"active": m["next"], "next": _new_key(key_dir), "retired": retired[:KEEP_RETIRED]}
    _write_manifest(key_dir, manifest)
    for old in retired[KEEP_RETIRED:]:  # after the manifest that no longer names them
        (key_dir / f"{old}.pem").unlink(missing_ok=True)
    return manifest


if __name__ == "__main__":  # python -m identity_service.keys init DIR [ACTIVE_PEM] | rotate DIR
    verb, directory = sys.argv[1], Path(sys.argv[2])
    if verb == "init":
        print(json.dumps(init(directory, Path(sys.argv[3]) if len(sys.argv) > 3 else None)))
    elif verb == "rotate":
        print(json.dumps(rotate(directory)))
    else:
        sys.exit("usage: python -m identity_service.keys init DIR [ACTIVE_PEM] | rotate DIR")
