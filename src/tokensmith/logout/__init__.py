"""OpenID Connect Back-Channel Logout 1.0: the logout token (:mod:`.token`), the outbox
that makes its delivery at-least-once (:mod:`.outbox`) and the worker that POSTs it
(:mod:`.delivery`, which needs httpx and is imported only by the facade and the CLI)."""

from tokensmith.logout.outbox import LogoutMessage, LogoutOutbox, backoff
from tokensmith.logout.token import BACKCHANNEL_LOGOUT_EVENT, LOGOUT_TOKEN_TYP, mint_logout_token

__all__ = [
    "BACKCHANNEL_LOGOUT_EVENT",
    "LOGOUT_TOKEN_TYP",
    "LogoutMessage",
    "LogoutOutbox",
    "backoff",
    "mint_logout_token",
]
