"""One deployment's DPoP (RFC 9449), as the facade and the HTTP edge use it: the proof
verifier built from ``Settings``, nonces keyed from the server secret so that every
instance issues and accepts the same ones (§8), and the rules of who must send a proof
(§5.2 ``dpop_bound_access_tokens``) and whose refresh tokens a proof binds (§5)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tokensmith.clock import Clock
from tokensmith.dpop.nonce import Nonces
from tokensmith.dpop.proof import Proof, ProofVerifier
from tokensmith.errors import InvalidDPoPProof
from tokensmith.settings import Settings

if TYPE_CHECKING:
    from tokensmith.clients import Client

NONCE_PURPOSE = b"tokensmith dpop nonce"
# What the facade accepts as a ``DPoP`` header: its one value or all its values.
ProofHeader = str | Sequence[str] | None


def token_endpoint(settings: Settings) -> str:
    """The token endpoint's URI as discovery publishes it: the ``htu`` of token requests,
    so the issuer (the public URL, also behind a proxy) decides it, not the Host header."""
    return f"{settings.issuer.rstrip('/')}/token"


class DPoP:
    """The deployment's proof verifier and nonces; ``nonce_key`` is read on first use."""

    def __init__(self, settings: Settings, clock: Clock, nonce_key: Callable[[], bytes]) -> None:
        self._settings = settings
        self._clock = clock
        self._nonce_key = nonce_key
        self._verifier: ProofVerifier | None = None
        self._lock = threading.Lock()
        self.token_endpoint = token_endpoint(settings)

    @property
    def verifier(self) -> ProofVerifier:
        if self._verifier is None:
            with self._lock:
                if self._verifier is None:
                    s = self._settings
                    nonces = Nonces(self._nonce_key(), clock=self._clock) if s.dpop_nonces else None
                    self._verifier = ProofVerifier(
                        algorithms=s.dpop_algs,
                        iat_window=s.dpop_iat_window,
                        iat_skew=s.dpop_iat_skew,
                        clock=self._clock,
                        nonces=nonces,
                    )
        return self._verifier

    def nonce(self) -> str | None:
        """A fresh ``DPoP-Nonce`` to send with a response, when nonces are on."""
        nonces = self.verifier.nonces
        return None if nonces is None else nonces.current()

    def proof_for(
        self, client: Client | None, header: ProofHeader, *, htm: str, htu: str | None
    ) -> Proof | None:
        """The verified proof of a token request (``htu`` defaults to the token endpoint),
        or ``None`` without one; a client registered with ``dpop_bound_access_tokens``
        must send one (RFC 9449 §5.2; SECURITY D2). The caller records it in the store's
        ledger (:func:`tokensmith.dpop.replay.remember_proof`)."""
        if header is None or (not isinstance(header, str) and not header):
            if client is not None and client.dpop_bound_access_tokens:
                raise InvalidDPoPProof("this client must send a DPoP proof")
            return None
        # Its jti goes to the store's ledger with the request's own writes, so a request
        # that fails (a bad refresh token, say) leaves nothing remembered anywhere.
        return self.verifier.verify(header, htm=htm, htu=htu or self.token_endpoint, remember=False)


def binds_refresh_tokens(client: Client | None) -> bool:
    """RFC 9449 §5: a public client's refresh tokens are bound to its DPoP key; a
    confidential client's are already bound to its credentials and may change keys."""
    return client is None or not client.confidential
