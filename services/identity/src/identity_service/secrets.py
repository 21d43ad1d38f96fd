"""Password and secret hashing: argon2id for passwords (low entropy), SHA-256 for random tokens/secrets."""
from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_ok(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except VerificationError:
        return False


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(token: str) -> str:
    """Stored form of a high-entropy token (codes, refresh tokens, client secrets): never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_hex(nbytes: int) -> str:
    return secrets.token_hex(nbytes)
