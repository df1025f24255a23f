"""Encryption of webhook secrets at rest, and hashing of API keys and passwords.

Webhook secrets must be read back to sign, so they are encrypted (Fernet: AES-128-CBC +
HMAC-SHA256). `TIDINGS_ENCRYPTION_KEY` may list several comma-separated keys: the first
encrypts, all decrypt, which is how the key is rotated. API keys are random 32-byte tokens,
so a SHA-256 hash is enough to store them; passwords are people's, so they get argon2.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)


class SecretBox:
    """Encrypts and decrypts webhook secrets with the configured key(s)."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ValueError("TIDINGS_ENCRYPTION_KEY is empty")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in parts])
        except ValueError as exc:
            raise ValueError(
                "TIDINGS_ENCRYPTION_KEY must be urlsafe-base64 32-byte Fernet keys, comma-separated"
                " (make one with `tidings keygen`)"
            ) from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("a stored secret cannot be decrypted with the configured key") from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt `token` with the first key."""
        return self._fernet.rotate(token.encode()).decode()


def new_encryption_key() -> str:
    return Fernet.generate_key().decode()


def load_or_create_key(configured: str | None, key_file: Path) -> str:
    """The encryption key(s): configured, else read from `key_file`, else made and saved there."""
    if configured:
        return configured
    if key_file.exists():
        return key_file.read_text().strip()
    key = new_encryption_key()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    log.warning(
        "TIDINGS_ENCRYPTION_KEY is not set: generated one and saved it to %s. "
        "In production set TIDINGS_ENCRYPTION_KEY and keep it apart from the database.",
        key_file,
    )
    return key


def hash_token(token: str) -> str:
    """Stored form of an API key or the operator token (high-entropy, so SHA-256 suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


_hasher = PasswordHasher()
# A hash made once, so that a sign-in with an unknown email costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash("tidings-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
