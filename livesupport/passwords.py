"""Agent password hashing with Argon2id (OWASP parameters), as PHC strings."""

from __future__ import annotations

import base64
import hmac
import os
import re

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

# OWASP Password Storage Cheat Sheet: m=19 MiB, t=2, p=1.
MEMORY_KIB = 19 * 1024
ITERATIONS = 2
LANES = 1
_PHC = re.compile(
    r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _derive(
    password: str, salt: bytes, memory: int, iterations: int, lanes: int, length: int
) -> bytes:
    kdf = Argon2id(salt=salt, length=length, iterations=iterations, lanes=lanes, memory_cost=memory)
    return kdf.derive(password.encode("utf-8"))


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = _derive(password, salt, MEMORY_KIB, ITERATIONS, LANES, 32)
    return f"$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={LANES}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, phc: str) -> bool:
    match = _PHC.match(phc)
    if match is None:
        return False
    memory, iterations, lanes = (int(match.group(i)) for i in (1, 2, 3))
    salt, expected = _unb64(match.group(4)), _unb64(match.group(5))
    actual = _derive(password, salt, memory, iterations, lanes, len(expected))
    return hmac.compare_digest(actual, expected)


# Verified against when the email is unknown, so a login takes the same time
# whether or not the account exists.
DUMMY_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
    "9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ"
)
