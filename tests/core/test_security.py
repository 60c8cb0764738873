"""Passwords, tokens and secret encryption."""

from __future__ import annotations

import hashlib

import bcrypt
import pytest

from labkeeper.core import security


def test_argon2id_hashes_verify_and_differ():
    h1, h2 = security.hash_password("pw-123456"), security.hash_password("pw-123456")
    assert h1.startswith("$argon2id$") and h1 != h2
    assert security.verify_password(h1, "pw-123456")
    assert not security.verify_password(h1, "pw-1234567")
    assert not security.verify_password("garbage", "pw")


def test_seed_hashes_verify_and_ask_for_rehash():
    seed = bcrypt.hashpw(hashlib.sha256(b"pw").hexdigest().encode(), bcrypt.gensalt(4)).decode()
    plain = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    for stored in (seed, plain):
        assert security.verify_password(stored, "pw")
        assert not security.verify_password(stored, "other")
        assert security.needs_rehash(stored)


def test_secrets_encrypt_and_rotate_without_downtime():
    old = security.make_cipher(["old-key-material-0123456789abcdef"])
    both = security.make_cipher(
        ["new-key-material-0123456789abcdef", "old-key-material-0123456789abcdef"]
    )
    token = old.encrypt(b"enable-secret")
    assert both.decrypt(token) == b"enable-secret"  # old data still opens during rotation
    rotated = both.rotate(token)
    new_only = security.make_cipher(["new-key-material-0123456789abcdef"])
    assert new_only.decrypt(rotated) == b"enable-secret"
    with pytest.raises(Exception):
        new_only.decrypt(token)


def test_encrypt_decrypt_with_configured_keys():
    secret = security.encrypt("s3cr3t")
    assert "s3cr3t" not in secret and security.decrypt(secret) == "s3cr3t"
    with pytest.raises(ValueError):
        security.decrypt("not-a-fernet-token")


def test_tokens_are_random_and_hashed():
    a, b = security.new_token("lkt"), security.new_token("lkt")
    assert a != b and a.startswith("lkt_") and len(a) > 40
    assert security.token_hash(a) == hashlib.sha256(a.encode()).hexdigest()
