"""The logout token (OpenID Connect Back-Channel Logout 1.0 §2.4).

A JWT typed ``logout+jwt`` (§2.4, RFC 8725 §3.11) carrying ``iss``, ``aud`` (the client),
``iat``, ``exp``, ``jti``, ``sub``, ``sid`` and the ``events`` member naming the
back-channel logout event. It never carries a ``nonce`` (§2.4: forbidden, so a logout token
cannot pass for an ID token).
"""

from __future__ import annotations

from tokensmith.keys.signer import Signer
from tokensmith.tokens.jws import header_segment, sign_compact

LOGOUT_TOKEN_TYP = "logout+jwt"
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def mint_logout_token(
    signer: Signer,
    issuer: str,
    *,
    client_id: str,
    subject: str,
    session_id: str,
    jti: str,
    issued_at: int,
    lifetime: int,
) -> str:
    """A signed logout token for one session of ``subject`` at ``client_id``. Both ``sub``
    and ``sid`` are sent: §2.4 allows both, and a client that asked for
    ``backchannel_logout_session_required`` needs the ``sid``."""
    payload = {
        "iss": issuer,
        "sub": subject,
        "aud": client_id,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "jti": jti,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        "sid": session_id,
    }
    return sign_compact(signer, header_segment(signer.alg, signer.kid, LOGOUT_TOKEN_TYP), payload)
