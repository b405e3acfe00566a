"""``RemoteJwks``: a resource server's cached view of an issuer's JWK Set (SECURITY H5).

The numbers follow panva/jose's ``createRemoteJWKSet`` (timeout 5 s, ``cacheMaxAge``
10 min, ``cooldownDuration`` 30 s) and PyJWKClient (cooldown 30 s):

- HTTPS only; ``http://`` is allowed for a loopback host only behind
  ``allow_insecure_loopback=True`` (tests, a sidecar). Redirects are never followed
  (GHSA-9v7f-9g4p-ffgj): a 3xx is a failed fetch.
- The body is capped (512 KiB by default) and must not be content-encoded, so a
  compressed bomb is never inflated.
- ``timeout`` is one deadline for the whole fetch (connect, headers, body): httpx's own
  timeouts bound each socket read, so a server sending a byte every half second held a
  ``timeout=5`` fetch for 10.5 s.
- Freshness is the response's ``Cache-Control: max-age`` (less ``Age``), clamped to
  [30 s, 24 h]; 10 min when absent. ``If-None-Match`` revalidates with the ETag.
- A fetch is attempted when there is no set yet, when the set is stale, or when a ``kid``
  is unknown, but never twice within the cooldown (30 s) of the previous attempt, whatever
  its outcome: 1,000 random ``kid``s cost at most one fetch (PYSEC-2026-177), and an issuer
  that is down is asked at most once per cooldown.
- A failed fetch (network, status, size, JSON, a set with no usable key) keeps the last
  good set (stale-if-error; GHSA-fhv5-28vv-h8m8); an unknown ``kid`` is then ``None``,
  which the verifier turns into ``InvalidToken`` (401), never an exception.
- Keys go through ``JwkSet`` (SECURITY V9 hygiene). Every time comes from the clock.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass

import httpx

from tokensmith.clock import Clock, SystemClock
from tokensmith.deadline import Deadline
from tokensmith.errors import ConfigError, InvalidKey
from tokensmith.keys.jwkset import JwkSet
from tokensmith.keys.lifecycle import VerificationKey

log = logging.getLogger("tokensmith.http.remote_jwks")

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BYTES = 512 * 1024
DEFAULT_COOLDOWN = 30.0
DEFAULT_MAX_AGE = 600.0
MIN_MAX_AGE = 30.0
MAX_MAX_AGE = 86_400.0
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|=|$)", re.IGNORECASE)


class JwksFetchError(Exception):
    """One failed fetch; caught inside ``RemoteJwks`` and only logged."""


def _too_slow(deadline: Deadline) -> JwksFetchError:
    return JwksFetchError(f"no complete answer within {deadline.seconds} s")


@dataclass(frozen=True)
class _Cached:
    keys: JwkSet
    expires_at: float
    etag: str | None


class RemoteJwks:
    """A ``KeyLookup`` over a remote JWKS URL; thread-safe, one fetch at a time.

    ``client`` may be any ``httpx.Client`` (its transport decides where requests go, which
    is how tests serve the set from a Starlette app); redirects and the timeout are set on
    every request, so an injected client cannot loosen them. A client made here is closed
    by ``close()``.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        cooldown: float = DEFAULT_COOLDOWN,
        default_max_age: float = DEFAULT_MAX_AGE,
        min_max_age: float = MIN_MAX_AGE,
        max_max_age: float = MAX_MAX_AGE,
        allow_insecure_loopback: bool = False,
    ) -> None:
        self.url = check_url(url, allow_insecure_loopback)
        if not 0 < timeout <= 60:
            raise ConfigError("timeout must be between 0 and 60 s")
        if max_bytes <= 0 or cooldown < 0:
            raise ConfigError("max_bytes must be positive and cooldown non-negative")
        if not 0 <= min_max_age <= default_max_age <= max_max_age:
            raise ConfigError("need min_max_age <= default_max_age <= max_max_age")
        self._clock: Clock = clock or SystemClock()
        self._owns_client = client is None
        # No keep-alive: fetches are at least a cooldown apart, and a fresh connection is
        # one the deadline can watch from its first byte.
        self._client = client or httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._cooldown = cooldown
        self._default_max_age = default_max_age
        self._min_max_age = min_max_age
        self._max_max_age = max_max_age
        self._cached: _Cached | None = None
        self._last_attempt: float | None = None
        self._lock = threading.Lock()

    # -- KeyLookup ------------------------------------------------------------------------
    def verification_key(self, kid: str) -> VerificationKey | None:
        """The key named ``kid``, fetching the set first when ``fetch_due(kid)``."""
        if not isinstance(kid, str):
            return None
        if self.fetch_due(kid):
            with self._lock:
                if self.fetch_due(kid):  # another thread may have fetched meanwhile
                    self._fetch()
        return self.cached_key(kid)

    def cached_key(self, kid: str) -> VerificationKey | None:
        """The key named ``kid`` in the set in hand; never fetches, never blocks."""
        cached = self._cached
        return cached.keys.verification_key(kid) if cached is not None else None

    def fetch_due(self, kid: str) -> bool:
        """True when ``verification_key(kid)`` would fetch now (it may then block for up to
        the timeout). Cheap and lock-free: callers on an event loop use it to decide
        whether to move verification to a thread."""
        now = self._clock.now()
        last = self._last_attempt
        if last is not None and 0 <= now - last < self._cooldown:
            return False
        cached = self._cached
        return (
            cached is None or now >= cached.expires_at or cached.keys.verification_key(kid) is None
        )

    def refresh(self) -> bool:
        """Fetch now, ignoring cooldown and freshness (start-up warm-up, an operator's
        nudge). True when a good set is in hand afterwards."""
        with self._lock:
            return self._fetch()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- fetching -------------------------------------------------------------------------
    def _fetch(self) -> bool:
        """One attempt, under the lock. Failure keeps the previous set."""
        self._last_attempt = self._clock.now()
        previous = self._cached
        try:
            self._cached = self._download(previous)
        except JwksFetchError as exc:
            log.warning("JWKS fetch from %s failed, keeping the last good set: %s", self.url, exc)
            return previous is not None
        except Exception:
            # Whatever went wrong, a verifier must keep its last good set (stale-if-error).
            log.exception("JWKS fetch from %s failed unexpectedly", self.url)
            return previous is not None
        return True

    def _download(self, previous: _Cached | None) -> _Cached:
        headers = {
            "Accept": "application/jwk-set+json, application/json",
            "Accept-Encoding": "identity",
        }
        if previous is not None and previous.etag:
            headers["If-None-Match"] = previous.etag
        with Deadline(self._timeout) as deadline:
            try:
                return self._exchange(headers, previous, deadline)
            except (httpx.HTTPError, httpx.StreamError) as exc:
                if deadline.passed:
                    raise _too_slow(deadline) from None
                raise JwksFetchError(f"{type(exc).__name__}: {exc}") from None

    def _exchange(
        self, headers: dict[str, str], previous: _Cached | None, deadline: Deadline
    ) -> _Cached:
        with self._client.stream(
            "GET",
            self.url,
            headers=headers,
            follow_redirects=False,
            timeout=self._timeout,
            extensions={"trace": deadline.trace},
        ) as response:
            deadline.watch(response.extensions.get("network_stream"))
            if response.status_code == 304 and previous is not None:
                return _Cached(previous.keys, self._expiry(response), previous.etag)
            if response.status_code != 200:
                raise JwksFetchError(f"HTTP status {response.status_code}")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise JwksFetchError(f"unexpected content-encoding {encoding!r}")
            body = self._read_capped(response, deadline)
            expires_at = self._expiry(response)
            etag = response.headers.get("etag")
        return _Cached(_parse(body), expires_at, etag)

    def _read_capped(self, response: httpx.Response, deadline: Deadline) -> bytes:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self._max_bytes:
            raise JwksFetchError("response larger than the cap")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > self._max_bytes:
                raise JwksFetchError("response larger than the cap")
            if deadline.passed:
                raise _too_slow(deadline)
            chunks.append(chunk)
        return b"".join(chunks)

    def _expiry(self, response: httpx.Response) -> float:
        """RFC 9111 §4.2.1: freshness lifetime = max-age, less the response's ``Age``."""
        lifetime = self._default_max_age
        cache_control = response.headers.get("cache-control", "")
        match = _MAX_AGE.search(cache_control)
        if _NO_CACHE.search(cache_control):
            lifetime = self._min_max_age
        elif match is not None:
            lifetime = float(match.group(1))
            age = response.headers.get("age", "")
            if age.isdigit():
                lifetime -= float(age)
        lifetime = min(max(lifetime, self._min_max_age), self._max_max_age)
        return self._clock.now() + lifetime


def _parse(body: bytes) -> JwkSet:
    try:
        document = json.loads(body.decode("utf-8"))
        keys = JwkSet(document)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JwksFetchError("body is not UTF-8 JSON") from None
    except InvalidKey as exc:
        raise JwksFetchError(exc.description) from None
    if len(keys) == 0 and keys.rejected:
        # Every entry refused: more likely a broken publication than a deliberate empty set.
        raise JwksFetchError(
            "no usable key in the set: " + "; ".join(r.reason for r in keys.rejected[:3])
        )
    for rejected in keys.rejected:
        log.warning(
            "JWKS key %s (index %d) skipped: %s", rejected.kid, rejected.index, rejected.reason
        )
    return keys


def check_url(url: str, allow_insecure_loopback: bool) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise ConfigError("jwks_uri is not a valid URL") from None
    if not parsed.host:
        raise ConfigError("jwks_uri needs a host")
    if parsed.scheme == "https":
        return url
    if parsed.scheme == "http" and allow_insecure_loopback and parsed.host in _LOOPBACK_HOSTS:
        return url
    raise ConfigError(
        "jwks_uri must use https (http only for loopback with allow_insecure_loopback)"
    )
