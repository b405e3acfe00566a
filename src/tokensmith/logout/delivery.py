"""Delivering logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.5, §2.8).

Each due message of the outbox is claimed, signed into a fresh logout token (same ``jti`` on
every attempt), and POSTed as ``logout_token=...`` to the client's current
``backchannel_logout_uri``, no redirects followed. A 2xx answer (§2.8: 200 or 204) ends
it; anything else, or no answer, schedules a retry with exponential backoff and jitter,
until ``Settings.backchannel_max_attempts``. Logs name the client and the message id, never
the token.

Each POST is bounded as a whole, not only per socket operation: from the connect to the
answer's status line it has one deadline (``_PHASES`` times ``Settings.backchannel_timeout``),
past which its connection is shut down and the attempt has failed; a receiver trickling
header lines cannot hold the delivery thread, nor outlive the claim's lease. Only the
status matters (§2.8), so the answer's body is never read.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tokensmith.clients import Client
from tokensmith.clock import Clock
from tokensmith.deadline import Deadline
from tokensmith.keys.signer import Signer
from tokensmith.logout.outbox import LOGOUT_BATCH, LogoutMessage, LogoutOutbox, backoff
from tokensmith.logout.token import mint_logout_token
from tokensmith.settings import Settings

logger = logging.getLogger("tokensmith.logout")

# §2.4 leaves the lifetime to the OP; two minutes covers a receiver's clock skew.
LOGOUT_TOKEN_LIFETIME = 120
# One POST's deadline, in timeouts: one each for connect, write and read. A claim must still
# cover it before a delivery starts, so the lease never runs out mid-request.
_PHASES = 3


@dataclass(frozen=True)
class DeliveryReport:
    """What one :meth:`LogoutDelivery.run_once` did."""

    delivered: int = 0
    retried: int = 0
    dropped: int = 0


class LogoutDelivery:
    """Delivers the outbox's due messages on the calling thread (``tokensmith serve`` runs
    it in its maintenance thread; ``tokensmith logout deliver`` once)."""

    def __init__(
        self,
        outbox: LogoutOutbox,
        *,
        client: Callable[[str], Client | None],
        signer: Callable[[], Signer],
        settings: Settings,
        clock: Clock,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._signer = signer
        self._settings = settings
        self._clock = clock
        # Names this instance's claims; a restarted instance is a new claimant.
        self.claimant = secrets.token_urlsafe(12)
        self._per_message = _PHASES * settings.backchannel_timeout
        self._http = httpx.Client(
            timeout=settings.backchannel_timeout,
            follow_redirects=False,
            trust_env=False,
            # A fresh connection per POST: the deadline watches its socket from the connect
            # on (tokensmith/deadline.py).
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def close(self) -> None:
        self._http.close()

    def run_once(self, limit: int = LOGOUT_BATCH) -> DeliveryReport:
        """Claim up to ``limit`` due messages and deliver them one after another."""
        now = self._clock.now()
        lease = limit * self._per_message + self._settings.backchannel_timeout
        claimed = self._outbox.claim_logouts(now, lease, limit, self.claimant)
        counts = {"delivered": 0, "retried": 0, "dropped": 0}
        deadline = now + lease
        for message in claimed:
            if self._clock.now() + self._per_message > deadline:
                # Not enough of the lease left to finish: hand it back untried.
                self._outbox.logout_failed(message.id, self.claimant, self._clock.now())
                continue
            counts[self._deliver(message)] += 1
        return DeliveryReport(**counts)

    def _deliver(self, message: LogoutMessage) -> str:
        client = self._client(message.client_id)
        uri = None if client is None else client.backchannel_logout_uri
        if uri is None:
            # The client was deleted or unregistered its URI: nobody to tell.
            self._outbox.logout_delivered(message.id, self.claimant)
            return "dropped"
        try:
            token = mint_logout_token(
                self._signer(),
                self._settings.issuer,
                client_id=message.client_id,
                subject=message.subject,
                session_id=message.session_id,
                jti=message.id,
                issued_at=int(self._clock.now()),
                lifetime=LOGOUT_TOKEN_LIFETIME,
            )
            status = self._post(uri, token)
        except (httpx.HTTPError, OSError) as exc:  # unreachable, timed out, reset
            return self._failed(message, type(exc).__name__)
        if not 200 <= status < 300:
            return self._failed(message, f"HTTP {status}")
        self._outbox.logout_delivered(message.id, self.claimant)
        logger.info("back-channel logout %s delivered to %s", message.id, message.client_id)
        return "delivered"

    def _post(self, uri: str, token: str) -> int:
        """POST the token; the answer's status, within the deadline or not at all."""
        with Deadline(self._per_message) as deadline:
            try:
                with self._http.stream(
                    "POST",
                    uri,
                    data={"logout_token": token},
                    extensions={"trace": deadline.trace},
                ) as response:
                    # Leaving the block closes the connection with the body unread.
                    return response.status_code
            except httpx.HTTPError:
                if deadline.passed:  # the deadline shut the connection down
                    raise httpx.TimeoutException(f"past {deadline.seconds:g} s") from None
                raise

    def _failed(self, message: LogoutMessage, outcome: str) -> str:
        attempts = message.attempts + 1
        if attempts >= self._settings.backchannel_max_attempts:
            self._outbox.logout_failed(message.id, self.claimant, None)
            logger.warning(
                "back-channel logout %s to %s dropped after %d attempts (%s)",
                message.id,
                message.client_id,
                attempts,
                outcome,
            )
            return "dropped"
        settings = self._settings
        delay = backoff(
            attempts, settings.backchannel_poll_interval, settings.backchannel_max_backoff
        )
        self._outbox.logout_failed(message.id, self.claimant, self._clock.now() + delay)
        logger.info(
            "back-channel logout %s to %s failed (%s); retry in %.1f s",
            message.id,
            message.client_id,
            outcome,
            delay,
        )
        return "retried"
