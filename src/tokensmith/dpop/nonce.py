"""Stateless server nonces (RFC 9449 §8 and §9): ``HMAC-SHA256(key, step)`` over a time
step, so any instance holding the key can check a nonce another one issued, with nothing
stored. A nonce is good during its step and the next one, then the client is told to use
the current one (``use_dpop_nonce``)."""

from __future__ import annotations

import hashlib
import hmac
import struct

from tokensmith.clock import Clock, SystemClock
from tokensmith.errors import UseDPoPNonce
from tokensmith.keys.jwk import b64url

# Seconds a nonce is issued for; it is accepted for up to two steps.
NONCE_STEP = 300
_STEP = struct.Struct(">Q")
_MAC_BYTES = 16
_NONCE_LENGTH = 32  # base64url of 8 + 16 bytes


class Nonces:
    """Issues and checks the nonces of one deployment (``key`` is shared by its instances)."""

    def __init__(self, key: bytes, *, clock: Clock | None = None, step: int = NONCE_STEP) -> None:
        if len(key) < 16:
            raise ValueError("a nonce key needs at least 128 bits")
        self._key = key
        self._clock: Clock = clock or SystemClock()
        self._step = step
        self._issued: tuple[int, str] = (-1, "")

    def _nonce(self, step: int) -> str:
        packed = _STEP.pack(step)
        mac = hmac.new(self._key, packed, hashlib.sha256).digest()[:_MAC_BYTES]
        return b64url(packed + mac)

    def current(self) -> str:
        """The nonce of the current step (what a ``DPoP-Nonce`` header carries)."""
        step = int(self._clock.now()) // self._step
        issued = self._issued
        if issued[0] != step:
            issued = (step, self._nonce(step))
            self._issued = issued
        return issued[1]

    def check(self, nonce: object) -> None:
        """Raise ``UseDPoPNonce`` with the current nonce unless ``nonce`` is this step's or
        the previous one's."""
        current = self.current()
        if isinstance(nonce, str) and len(nonce) == _NONCE_LENGTH:
            if hmac.compare_digest(nonce, current):
                return
            previous = int(self._clock.now()) // self._step - 1
            if hmac.compare_digest(nonce, self._nonce(previous)):
                return
        raise UseDPoPNonce("the DPoP proof must carry the server's current nonce", current)
