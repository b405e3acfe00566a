"""Opaque refresh-token secrets: format, checksum, hashing and grace-retry derivation.

Format (docs/contract.md "Tokens"; SECURITY R7): ``tsr_`` + base64url(32 bytes, no padding, 43
chars)
+ a 6-character checksum, base64url of the first 4 bytes of SHA-256 over prefix and body.
The fixed prefix lets secret scanners find leaked tokens; the checksum lets us refuse typos
and garbage with a strict regex *before* any database query. Only SHA-256 hashes are stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

PREFIX = "tsr_"
SECRET_BYTES = 32
SALT_BYTES = 16
TOKEN_LENGTH = len(PREFIX) + 43 + 6
# The last character of unpadded base64url carries only 2 (32 bytes) or 4 (4 bytes) bits, so
# only these letters are canonical there; anything else would decode to the same bytes.
_TOKEN_RE = re.compile(r"tsr_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048][A-Za-z0-9_-]{5}[AQgw]")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _checksum(head: str) -> str:
    return _b64(hashlib.sha256(head.encode("ascii")).digest()[:4])


def format_token(raw: bytes) -> str:
    """The token string for 32 secret bytes."""
    if len(raw) != SECRET_BYTES:
        raise ValueError("a refresh token carries exactly 32 bytes")
    head = PREFIX + _b64(raw)
    return head + _checksum(head)


def new_token() -> str:
    """A fresh token from the CSPRNG (256 bits; OWASP and ASVS 5.0 V7.2.3 floors are lower)."""
    return format_token(secrets.token_bytes(SECRET_BYTES))


def is_well_formed(token: object) -> bool:
    """Strict shape and checksum check; costs no I/O, so hostile input never reaches SQL."""
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
        return False
    if _TOKEN_RE.fullmatch(token) is None:
        return False
    return hmac.compare_digest(_checksum(token[:-6]), token[-6:])


def token_hash(token: str) -> bytes:
    """The stored lookup key: SHA-256 of the token (a hash lookup is timing-safe)."""
    return hashlib.sha256(token.encode("ascii")).digest()


def hash_prefix(digest: bytes) -> str:
    """A short, non-reversible label for logs and events (never log a token)."""
    return digest[:6].hex()


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def derive_child(server_secret: bytes, salt: bytes, parent_hash: bytes) -> str:
    """The child token of ``parent_hash``: HMAC-SHA256(server secret, salt || parent hash).

    Deriving instead of storing it lets a grace retry return the byte-equal child
    (SECURITY R3) while the database still holds only hashes.
    """
    return format_token(hmac.digest(server_secret, salt + parent_hash, "sha256"))


def new_child(secret: bytes | None, parent_hash: bytes) -> tuple[bytes | None, str]:
    """A rotation's child token and the salt to store with it: derived when there is a
    ``secret`` (a grace window is open, so a retry must get the same child back), else plain
    random with no salt, leaving nothing anywhere from which to compute it (SECURITY B1)."""
    if secret is None:
        return None, new_token()
    salt = new_salt()
    return salt, derive_child(secret, salt, parent_hash)
