"""Passwords, tokens and secret encryption.

- Passwords: argon2id. bcrypt hashes from the seed systems (bcrypt of the SHA-256 hex digest of
  the password, or plain bcrypt) verify, and the caller re-hashes them with argon2id.
- Tokens: random, shown once, stored as SHA-256 (a high-entropy token needs no slow hash).
- Secrets (device credentials...): MultiFernet, so keys rotate without downtime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from labkeeper.config import get_settings


@lru_cache
def _hasher() -> PasswordHasher:
    if get_settings().env == "test":
        # Tests create hundreds of users; the production cost would dominate the suite.
        return PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _hasher().hash(password)


def is_legacy_hash(stored: str) -> bool:
    """Whether a stored hash comes from a seed system (bcrypt) and should be upgraded."""
    return stored.startswith(("$2a$", "$2b$", "$2y$"))


def verify_password(stored: str, password: str) -> bool:
    """Check a password against an argon2id or legacy bcrypt hash, in constant time per hash."""
    if not stored:
        return False
    if is_legacy_hash(stored):
        candidates = (hashlib.sha256(password.encode()).hexdigest().encode(), password.encode())
        try:
            return any(bcrypt.checkpw(c[:72], stored.encode()) for c in candidates)
        except ValueError:
            return False
    try:
        return _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether a hash should be replaced by one with current parameters."""
    if is_legacy_hash(stored):
        return True
    try:
        return _hasher().check_needs_rehash(stored)
    except InvalidHashError:
        return True


# A hash to verify against when the user does not exist, so timing does not reveal usernames.
@lru_cache
def dummy_hash() -> str:
    """A throwaway argon2 hash used to equalise login timing."""
    return hash_password(secrets.token_urlsafe(16))


def new_token(prefix: str) -> str:
    """A new random bearer token with a readable prefix (lks_ session, lkt_ API token...)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """The SHA-256 hex digest a token is stored and looked up by."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_eq(a: str, b: str) -> bool:
    """Compare two secrets without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def _fernet_key(material: str) -> bytes:
    # Accept real Fernet keys as they are; derive one from any other passphrase-like key.
    try:
        raw = base64.urlsafe_b64decode(material.encode())
        if len(raw) == 32:
            return material.encode()
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest())


def make_cipher(keys: list[str]) -> MultiFernet:
    """A MultiFernet over the given keys; the first encrypts, all decrypt."""
    return MultiFernet([Fernet(_fernet_key(k)) for k in keys])


@lru_cache
def _cipher() -> MultiFernet:
    return make_cipher(get_settings().key_list())


def encrypt(plaintext: str) -> str:
    """Encrypt a secret for storage."""
    return _cipher().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    """Decrypt a stored secret; raises ValueError when no configured key opens it."""
    try:
        return _cipher().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("secret cannot be decrypted with the configured keys") from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt a stored secret under the newest key."""
    return _cipher().rotate(ciphertext.encode()).decode()


def sign(value: str) -> str:
    """An HMAC signature (hex) of a value under the primary secret key."""
    key = get_settings().key_list()[0].encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def reset_caches() -> None:
    """Forget cached hashers and ciphers (tests change settings between cases)."""
    _hasher.cache_clear()
    _cipher.cache_clear()
    dummy_hash.cache_clear()
