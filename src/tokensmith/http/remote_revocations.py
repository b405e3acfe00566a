"""``RemoteRevocations``: a resource server's view of an issuer's revocation feed
(``GET /revocations`` and ``/revocations/stream``, :mod:`tokensmith.http.revocations`).

A thread reads the whole live list once, then follows the event stream (heartbeats every
5 s), reconnecting with backoff and resuming from its cursor (``Last-Event-ID``), so a
dropped connection costs delay, never an entry. The check on the hot path is a few dict
lookups, O(1) however many entries are held; entries leave memory once their ``exp``
passed (a token they concern can no longer verify).

The view fails closed: when nothing was heard from the issuer for ``max_staleness`` s
(default 60), every token is refused with 503 (``TemporarilyUnavailable``), unless
``fail_open=True`` was chosen explicitly. A revoked ``kid`` is refused at once and makes
the ``RemoteJwks`` fetch the key set again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import httpx

from tokensmith.errors import ConfigError, TemporarilyUnavailable
from tokensmith.http.remote_jwks import RemoteJwks, check_url
from tokensmith.keys.lifecycle import VerificationKey
from tokensmith.revocation.log import CLIENT_DISABLED, CLIENT_ENABLED, FAMILY, JTI, KID, SUBJECT
from tokensmith.tokens.jws import KeyLookup
from tokensmith.tokens.verify import Claims

log = logging.getLogger("tokensmith.http.remote_revocations")

DEFAULT_MAX_STALENESS = 60.0
DEFAULT_TIMEOUT = 5.0
# A stream silent for this long (three missed heartbeats) is dead: reconnect.
STREAM_READ_TIMEOUT = 15.0
# Reconnecting to an issuer that is down costs it one refused connection a second: less
# than the delay a longer backoff adds once it is back.
MAX_BACKOFF = 1.0
PRUNE_EVERY = 30.0
MAX_PAGES = 10_000


class RemoteRevocations:
    """Thread-safe; ``start()`` begins following, ``close()`` ends it."""

    def __init__(
        self,
        issuer: str,
        *,
        client_id: str,
        client_secret: str,
        jwks: RemoteJwks | None = None,
        max_staleness: float = DEFAULT_MAX_STALENESS,
        fail_open: bool = False,
        stream: bool = True,
        poll_interval: float = 1.0,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
        allow_insecure_loopback: bool = False,
    ) -> None:
        """``issuer``: the base URL (``/revocations`` is appended). ``stream=False`` polls
        every ``poll_interval`` s instead of following the event stream."""
        base = check_url(issuer.rstrip("/"), allow_insecure_loopback)
        if not 0 < max_staleness <= 86_400 or not 0 < poll_interval <= max_staleness:
            raise ConfigError("need 0 < poll_interval <= max_staleness <= 86400 s")
        self.url = f"{base}/revocations"
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._jwks = jwks
        self._max_staleness = max_staleness
        self._fail_open = fail_open
        self._stream = stream
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client or httpx.Client()
        self._cursor = 0
        self._heard_at = float("-inf")  # time.monotonic() of the last answer
        self._jtis: dict[str, float] = {}
        self._sids: dict[str, float] = {}
        self._subjects: dict[str, tuple[float, float]] = {}
        self._clients: dict[str, float] = {}
        self._kids: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: httpx.Response | None = None

    # -- the hot path ---------------------------------------------------------------------
    def check(self, claims: Claims) -> bool:
        """True when the token of ``claims`` is revoked (its jti, session, client, or issued
        before its subject's not-before time). Raises ``TemporarilyUnavailable`` when the
        view is older than ``max_staleness`` and failing open was not chosen."""
        if not self._fail_open and time.monotonic() - self._heard_at > self._max_staleness:
            raise TemporarilyUnavailable("the revocation list is out of date")
        if claims.get("jti") in self._jtis or claims.get("client_id") in self._clients:
            return True
        sid = claims.get("sid")
        if sid is not None and sid in self._sids:
            return True
        cut = self._subjects.get(claims.get("sub"))  # type: ignore[arg-type]
        return cut is not None and claims.get("iat", 0) < cut[0]

    def kid_revoked(self, kid: str) -> bool:
        return kid in self._kids

    def keys(self, lookup: KeyLookup) -> KeyLookup:
        """``lookup`` without the revoked keys: a token signed with one is refused."""
        return _WithoutRevoked(lookup, self)

    @property
    def cursor(self) -> int:
        return self._cursor

    def __len__(self) -> int:
        return (
            len(self._jtis)
            + len(self._sids)
            + len(self._subjects)
            + len(self._clients)
            + len(self._kids)
        )

    # -- following ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tokensmith-remote-revocations")
            self._thread.daemon = True
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            response.close()  # wakes a read blocked on the stream
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 1)
        if self._owns_client:
            self._client.close()

    def sync(self) -> None:
        """Read every entry after the cursor now (``GET /revocations``, page by page)."""
        for _ in range(MAX_PAGES):
            response = self._client.get(
                self.url,
                params={"since": self._cursor},
                auth=self._auth,
                timeout=self._timeout,
                follow_redirects=False,
            )
            if response.status_code != 200:
                raise httpx.HTTPStatusError(
                    f"HTTP status {response.status_code}",
                    request=response.request,
                    response=response,
                )
            body = response.json()
            for entry in body["entries"]:
                self._apply(entry)
            self._cursor = max(self._cursor, int(body["cursor"]))
            self._heard_at = time.monotonic()
            if not body["more"]:
                return

    def _run(self) -> None:
        backoff = 0.1
        pruned_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sync()
                backoff = 0.1
                if self._stream:
                    self._follow()
                else:
                    self._stop.wait(self._poll_interval)
            except Exception as exc:  # the issuer may be down or restarting: try again
                if self._stop.is_set():
                    return
                log.warning("revocation feed from %s failed: %s", self.url, type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
            if time.monotonic() - pruned_at >= PRUNE_EVERY:
                self._prune()
                pruned_at = time.monotonic()

    def _follow(self) -> None:
        """Read the event stream until it ends; every event moves the view's time."""
        timeout = httpx.Timeout(self._timeout, read=STREAM_READ_TIMEOUT)
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self._cursor)}
        with self._client.stream(
            "GET",
            f"{self.url}/stream",
            headers=headers,
            auth=self._auth,
            timeout=timeout,
            follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise httpx.HTTPStatusError(
                    f"HTTP status {response.status_code}",
                    request=response.request,
                    response=response,
                )
            self._response = response
            try:
                kind, data = "", ""
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data = line[5:].strip()
                    elif line == "" and data:
                        self._event(kind, json.loads(data))
                        kind, data = "", ""
            finally:
                self._response = None

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "revocation":
            self._apply(data)
            self._cursor = max(self._cursor, int(data["id"]))
        elif kind == "heartbeat":
            self._cursor = max(self._cursor, int(data["cursor"]))
        self._heard_at = time.monotonic()

    def _apply(self, entry: dict[str, Any]) -> None:
        kind, key, exp = entry["kind"], str(entry["key"]), float(entry["exp"])
        with self._lock:
            if kind == JTI:
                self._jtis[key] = exp
            elif kind == FAMILY:
                self._sids[key] = exp
            elif kind == SUBJECT:
                before = self._subjects.get(key, (0.0, 0.0))
                self._subjects[key] = (max(before[0], float(entry["at"])), max(before[1], exp))
            elif kind == CLIENT_DISABLED:
                self._clients[key] = exp
            elif kind == CLIENT_ENABLED:
                self._clients.pop(key, None)
            elif kind == KID:
                self._kids[key] = exp
        if kind == KID and self._jwks is not None:
            self._jwks.refresh()  # the issuer no longer publishes it: drop it here too

    def _prune(self) -> None:
        """Forget entries whose ``exp`` passed: copies, swapped in, so the hot path never
        waits (each lookup reads one dict)."""
        now = time.time()
        with self._lock:
            self._jtis = {k: e for k, e in self._jtis.items() if e > now}
            self._sids = {k: e for k, e in self._sids.items() if e > now}
            self._subjects = {k: v for k, v in self._subjects.items() if v[1] > now}
            self._clients = {k: e for k, e in self._clients.items() if e > now}
            self._kids = {k: e for k, e in self._kids.items() if e > now}


class _WithoutRevoked:
    """A ``KeyLookup`` that hides the keys the feed says were revoked."""

    def __init__(self, lookup: KeyLookup, revocations: RemoteRevocations) -> None:
        self._lookup = lookup
        self._revocations = revocations

    def verification_key(self, kid: str) -> VerificationKey | None:
        if self._revocations.kid_revoked(kid):
            return None
        return self._lookup.verification_key(kid)
