"""Signed tokens: visitor identity, node affinity, agent sessions and cursors.

Each purpose gets its own HMAC-SHA256 key derived from ``secret_key`` with
HKDF, so a token signed for one purpose never verifies for another. Tokens are
``<payload>.<signature>`` where the payload is dot-separated plain fields and
the signature is unpadded base64url; the signature is checked in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_PURPOSES = ("visitor", "node", "agent", "cursor")
# Tokens verified (or signed) lately, per purpose: each poll and send presents
# the same cookies and the cursor this node just signed, so most checks are a
# dictionary hit instead of an HMAC. Two generations of this many each: when
# the newer fills up, the older is dropped (forgetting only costs HMACs).
VERIFIED_CACHE = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Signer:
    """Signs and verifies the middleware's tokens with keys derived from one secret.

    :param secret_key: The deployment's secret; every node must share it.
    """

    def __init__(self, secret_key: str | bytes) -> None:
        secret = secret_key.encode() if isinstance(secret_key, str) else secret_key
        self._keys = {
            purpose: HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=f"livesupport {purpose} v1".encode(),
            ).derive(secret)
            for purpose in _PURPOSES
        }
        # purpose -> [newer, older] {token: its fields}, for tokens known to be genuine.
        self._verified: dict[str, list[dict[str, tuple[str, ...]]]] = {
            p: [{}, {}] for p in _PURPOSES
        }

    def _mac(self, purpose: str, payload: str) -> str:
        digest = hmac.digest(self._keys[purpose], payload.encode(), "sha256")
        return _b64(digest[:24])  # 192 bits: plenty against forgery, shorter cookies

    def _matches(self, purpose: str, payload: str, mac: str) -> bool:
        try:
            return hmac.compare_digest(mac.encode(), self._mac(purpose, payload).encode())
        except UnicodeEncodeError:  # lone surrogates: never a token this deployment signed
            return False

    def _remember(self, purpose: str, token: str, fields: tuple[str, ...]) -> None:
        generations = self._verified[purpose]
        if len(generations[0]) >= VERIFIED_CACHE:
            generations[1] = generations[0]
            generations[0] = {}
        generations[0][token] = fields

    def _known(self, purpose: str, token: str) -> tuple[str, ...] | None:
        newer, older = self._verified[purpose]
        found = newer.get(token)
        return older.get(token) if found is None else found

    def sign(self, purpose: str, *fields: str) -> str:
        payload = ".".join(fields)
        token = f"{payload}.{self._mac(purpose, payload)}"
        self._remember(purpose, token, fields)
        return token

    def unsign(self, purpose: str, token: str | None, nfields: int) -> list[str] | None:
        """The fields of a token of ``purpose``, or ``None`` if it is malformed or forged."""
        if not token or len(token) > 512:
            return None
        known = self._known(purpose, token)
        if known is not None:
            return list(known) if len(known) == nfields else None
        payload, _, mac = token.rpartition(".")
        fields = payload.split(".")
        if len(fields) != nfields or not all(fields):
            return None
        if not self._matches(purpose, payload, mac):
            return None
        self._remember(purpose, token, tuple(fields))
        return fields

    # Visitor identity: "<visitor_id>.<expires>.<mac>".
    def sign_visitor(self, visitor_id: str, max_age: int) -> str:
        return self.sign("visitor", visitor_id, str(int(time.time()) + max_age))

    def visitor_from(self, token: str | None) -> str | None:
        fields = self.unsign("visitor", token, 2)
        if fields is None or not fields[1].isdigit() or int(fields[1]) < time.time():
            return None
        return fields[0]

    # Node affinity: "<node_id>.<mac over node and visitor>", so a balancer can
    # route on the prefix and the cookie cannot be moved to another visitor.
    def sign_affinity(self, node_id: str, visitor_id: str) -> str:
        token = f"{node_id}.{self._mac('node', node_id + '.' + visitor_id)}"
        self._remember("node", f"{visitor_id}:{token}", (node_id,))
        return token

    def affinity_from(self, token: str | None, visitor_id: str) -> str | None:
        if not token or len(token) > 256:
            return None
        # Keyed by visitor too: the cookie is valid only for the visitor it was issued to.
        key = f"{visitor_id}:{token}"
        known = self._known("node", key)
        if known is not None:
            return known[0]
        node_id, _, mac = token.partition(".")
        if not self._matches("node", node_id + "." + visitor_id, mac):
            return None
        self._remember("node", key, (node_id,))
        return node_id


def token_hash(token: str) -> str:
    """What the store keeps of a bearer token, so a leaked database holds no live session."""
    return hashlib.sha256(token.encode()).hexdigest()
