"""End-to-end: the SPA example in headless Chromium against both example servers.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped,
with the reason printed, when either is missing. ``CHROMIUM`` / ``CHROMEDRIVER`` override
the binaries. The servers are the runnable example's own apps (``examples.run.build``)
under uvicorn on free loopback ports, with a 4-second access-token lifetime.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from examples.run import Example, build
from tests.dpop_helpers import DPoPKey
from tokensmith.events import Event
from tokensmith.http.cookies import COOKIE_NAME, CSRF_HEADER

ACCESS_TTL = 4  # seconds: short, with room for a slow machine between login and the 1st call
WAIT = 15.0  # the bound on every wait for the page


def _binary(env: str, *names: str) -> str | None:
    for name in (os.environ[env],) if os.environ.get(env) else names:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _binary("CHROMIUM", "chromium", "chromium-browser")
CHROMEDRIVER = _binary("CHROMEDRIVER", "chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    _reason = (
        "headless browser test skipped: Chromium and chromedriver are not installed "
        "(apt-get install chromium chromium-driver; .ci/run installs them)"
    )
    print(_reason)
    pytestmark = pytest.mark.skip(reason=_reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Servers:
    def __init__(self, example: Example, auth_port: int, api_port: int) -> None:
        self.example = example
        self.servers = [
            uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
            )
            for app, port in ((example.auth_app, auth_port), (example.api_app, api_port))
        ]
        self.threads = [threading.Thread(target=s.run, daemon=True) for s in self.servers]

    def __enter__(self) -> _Servers:
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 20
        while not all(s.started for s in self.servers):
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert all(t.is_alive() for t in self.threads), "uvicorn exited"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.should_exit = True
        for thread in self.threads:
            thread.join(10)


@pytest.fixture
def example(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Example]:
    """Both servers; ``indirect`` parametrization with ``True`` turns DPoP nonces on."""
    auth_port, api_port = _free_port(), _free_port()
    ex = build(
        auth_port=auth_port,
        api_port=api_port,
        data_dir=tmp_path / "data",
        access_token_ttl=ACCESS_TTL,
        dpop_nonces=getattr(request, "param", False),
    )
    with _Servers(ex, auth_port, api_port):
        yield ex


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The SPA as the test sees it: element text, actions that wait for completion."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def text(self, element_id: str) -> str:
        value: str = self.driver.find_element(By.ID, element_id).text
        return value

    def wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        WebDriverWait(self.driver, WAIT, poll_frequency=0.05).until(
            lambda _: condition(), message=f"timed out waiting for {what}"
        )

    def act(self, button_id: str) -> None:
        """Click and wait until the page has finished that action (its ``seq`` moves)."""
        before = int(self.text("seq"))
        self.driver.find_element(By.ID, button_id).click()
        self.wait_for(f"{button_id} to finish", lambda: int(self.text("seq")) > before)
        assert self.text("error") == "", self.text("error")

    def api_result(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.text("api-result"))
        return result

    def refresh_cookie(self) -> dict[str, Any] | None:
        """The refresh cookie as the browser stores it (WebDriver sees HttpOnly cookies)."""
        for cookie in self.driver.get_cookies():
            if cookie["name"] == COOKIE_NAME:
                return dict(cookie)
        return None

    def start(self, url: str) -> None:
        """Load ``url`` and wait until the page has started (restored a session or not)."""
        self.driver.get(url)
        self.wait_for("the page to start", lambda: int(self.text("seq")) >= 1)

    def run(self, script: str) -> Any:
        """Run async ``script`` in the page: its ``done(value)`` resolves the call."""
        wrapped = (
            "const done = arguments[arguments.length - 1];"
            f"(async () => {{ {script} }})().catch((e) => done({{error: String(e)}}));"
        )
        return self.driver.execute_async_script(wrapped)

    def stored_key(self) -> dict[str, Any]:
        """The private key as the page's IndexedDB holds it, and what exporting it gives."""
        found: dict[str, Any] = self.run(
            "const db = await new Promise((ok, no) => {"
            "  const r = indexedDB.open('tokensmith-spa'); r.onsuccess = () => ok(r.result);"
            "  r.onerror = () => no(r.error); });"
            "const pair = await new Promise((ok) => {"
            "  const r = db.transaction('keys').objectStore('keys').get('dpop');"
            "  r.onsuccess = () => ok(r.result); });"
            "let exported = 'exported';"
            "try { await crypto.subtle.exportKey('jwk', pair.privateKey); }"
            "catch (e) { exported = e.name; }"
            "done({extractable: pair.privateKey.extractable, export: exported});"
        )
        return found

    def steal_requests(self) -> None:
        """What an injected script (XSS) can do: wrap ``fetch`` and keep every request's
        ``Authorization`` and ``DPoP`` headers and body."""
        self.driver.execute_script(
            "window.stolen = []; const real = window.fetch;"
            "window.fetch = (url, init) => { const h = new Headers(init && init.headers);"
            "  window.stolen.push({url: String(url), authorization: h.get('authorization'),"
            "    dpop: h.get('dpop'), body: init && init.body ? String(init.body) : null});"
            "  return real(url, init); };"
        )

    def stored_value(self, key: str) -> Any:
        """A value the page keeps in its IndexedDB (body mode's refresh token)."""
        return self.run(
            "const db = await new Promise((ok, no) => {"
            "  const r = indexedDB.open('tokensmith-spa'); r.onsuccess = () => ok(r.result);"
            "  r.onerror = () => no(r.error); });"
            "const r = db.transaction('values').objectStore('values').get(arguments[0]);"
            "r.onsuccess = () => done(r.result === undefined ? null : r.result);".replace(
                "arguments[0]", json.dumps(key)
            )
        )

    def stolen(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = self.driver.execute_script("return window.stolen;")
        return requests

    def script_sees(self) -> dict[str, Any]:
        seen: dict[str, Any] = self.driver.execute_script(
            "return {cookie: document.cookie, local: localStorage.length,"
            " session: sessionStorage.length};"
        )
        return seen


def test_spa_login_api_silent_refresh_logout(example: Example, browser: WebDriver) -> None:
    started = time.monotonic()
    events: list[Event] = []
    example.ts.on_event(events.append)

    def names(name: str) -> list[Event]:
        return [e for e in events if e.name == name]

    page = Page(browser)

    # 0. The page loads from the auth server's origin and, having no cookie, is signed out.
    browser.get(example.auth_url + "/")
    page.wait_for("the page to start", lambda: int(page.text("seq")) >= 1)
    assert page.text("status") == "signed-out"
    assert page.refresh_cookie() is None

    # 1. Demo login: the user is shown; the refresh token is in a __Host- cookie that the
    #    browser accepted over http://127.0.0.1 (a secure context) with every attribute.
    page.act("login")
    assert page.text("status") == "signed-in"
    assert page.text("user") == "alice"
    assert len(names("issued")) == 1
    cookie = page.refresh_cookie()
    assert cookie is not None, "Chromium refused the __Host- cookie"
    assert cookie["httpOnly"] is True and cookie["secure"] is True
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["domain"] == "127.0.0.1"  # host-only: no Domain attribute
    first_refresh_token = cookie["value"]

    # 2. JavaScript cannot read the refresh cookie, and nothing is kept in web storage.
    seen = page.script_sees()
    assert COOKIE_NAME not in seen["cookie"] and "tsr_" not in seen["cookie"]
    assert seen["local"] == 0 and seen["session"] == 0

    # 3. The API (another origin, RemoteJwks on the auth server's JWKS) accepts the token.
    page.act("call-api")
    assert page.text("api-status") == "200" and page.text("api-trace") == "200"
    first = page.api_result()
    assert first["sub"] == "alice" and first["client_id"] == "spa-demo"
    assert first["jkt"] == page.text("jkt")  # DPoP-bound to the page's key
    assert page.stored_key() == {"extractable": False, "export": "InvalidAccessError"}
    assert "read" in first["scope"].split()
    assert page.text("refresh-count") == "0" and not names("rotated")

    # 4. Wait (bounded) until the access token has expired, then call the API again: it
    #    answers 401, the page refreshes through the cookie and retries with a new token.
    assert first["exp"] - time.time() <= ACCESS_TTL + 1
    while time.time() < first["exp"] + 0.2:
        time.sleep(0.05)
    page.act("call-api")
    assert page.text("api-trace") == "401 refresh 200"
    assert page.text("api-status") == "200"
    second = page.api_result()
    assert second["sub"] == "alice" and second["sid"] == first["sid"]  # same session
    assert second["jti"] != first["jti"] and second["exp"] > first["exp"]  # a new token
    assert page.text("refresh-count") == "1"
    rotated = names("rotated")
    assert len(rotated) == 1 and rotated[0].data["family_id"] == first["sid"]
    cookie = page.refresh_cookie()
    assert cookie is not None and cookie["value"] != first_refresh_token  # rotated
    assert COOKIE_NAME not in page.script_sees()["cookie"]

    # 5. A reload forgets the in-memory access token; the page restores the session from
    #    the cookie alone (one more rotation) and the API accepts the new token.
    browser.refresh()
    page.wait_for("the reloaded page to start", lambda: int(page.text("seq")) >= 1)
    assert page.text("status") == "signed-in" and page.text("user") == "alice"
    assert page.text("refresh-count") == "1" and len(names("rotated")) == 2
    page.act("call-api")
    assert page.text("api-trace") == "200"
    assert page.api_result()["sid"] == first["sid"]
    assert page.api_result()["jti"] not in (first["jti"], second["jti"])
    cookie = page.refresh_cookie()
    assert cookie is not None
    latest_refresh_token = cookie["value"]

    # 6. Logout: the cookie is gone, the page forgets the user, a refresh now fails.
    page.act("logout")
    assert page.text("status") == "signed-out" and page.text("user") == "-"
    assert page.refresh_cookie() is None
    assert [e.data["family_id"] for e in names("family_revoked")] == [first["sid"]]
    page.act("refresh")
    assert page.text("refresh-result").startswith("400 invalid_request")  # no cookie
    page.act("call-api")
    assert page.text("api-status") == "signed-out"

    # 7. ...and not only because the browser dropped the cookie: the server revoked the
    #    session, so the last refresh token is dead (it is also bound to the page's key,
    #    which is why the test asks the server rather than replaying it).
    assert example.ts.introspect(latest_refresh_token) == {"active": False}
    assert len(names("rotated")) == 2
    assert time.monotonic() - started < 60


def _wait_until_expired(access_token_exp: int) -> None:
    """Bounded by ``ACCESS_TTL``: the token's ``exp`` is at most that far ahead."""
    assert access_token_exp - time.time() <= ACCESS_TTL + 1
    while time.time() < access_token_exp + 0.2:
        time.sleep(0.05)


@pytest.mark.parametrize("example", [True], indirect=True, ids=["nonces"])
def test_spa_body_mode_keeps_its_refresh_token_beside_its_key(
    example: Example, browser: WebDriver
) -> None:
    """Body mode, with both servers requiring DPoP nonces (the page retries once each)."""
    events: list[Event] = []
    example.ts.on_event(events.append)
    page = Page(browser)
    page.start(example.auth_url + "/?mode=body")
    assert page.text("mode") == "body" and page.text("status") == "signed-out"

    # Login: the page keeps the refresh token (IndexedDB); no cookie is set.
    page.act("login")
    assert page.text("status") == "signed-in" and page.text("user") == "alice"
    assert page.refresh_cookie() is None
    first_refresh_token = page.stored_value("refresh-token")
    assert first_refresh_token.startswith("tsr_")

    page.act("call-api")
    first = page.api_result()
    assert first["client_id"] == "spa-demo-body" and first["jkt"] == page.text("jkt")
    # One use_dpop_nonce answer from each server (login, first API call), then none.
    assert page.text("nonce-retries") == "2" and page.text("api-trace") == "200"

    # Expiry: 401, a silent refresh with the stored token and a proof, then 200.
    _wait_until_expired(first["exp"])
    page.act("call-api")
    assert page.text("api-trace") == "401 refresh 200"
    assert page.api_result()["sid"] == first["sid"]
    rotated_token = page.stored_value("refresh-token")
    assert rotated_token not in (first_refresh_token, None)

    # Reload: the session comes back from IndexedDB, with the same key.
    jkt = page.text("jkt")
    browser.refresh()
    page.wait_for("the reloaded page to start", lambda: int(page.text("seq")) >= 1)
    assert page.text("status") == "signed-in" and page.text("jkt") == jkt
    page.act("call-api")
    assert page.text("api-trace") == "200" and page.api_result()["sid"] == first["sid"]

    # Logout revokes the page's token (RFC 7009) and forgets it.
    latest = page.stored_value("refresh-token")
    page.act("logout")
    assert page.text("status") == "signed-out" and page.stored_value("refresh-token") is None
    assert example.ts.introspect(latest) == {"active": False}
    assert [e.data["family_id"] for e in events if e.name == "family_revoked"] == [first["sid"]]


def _as_a_client(send: Callable[[str | None], httpx.Response]) -> httpx.Response:
    """``send(None)``; when the server answers ``use_dpop_nonce`` (400 body or 401
    challenge, RFC 9449 §8, §9), once more with the nonce it sent, as any client would."""
    r = send(None)
    nonce = r.headers.get("dpop-nonce")
    asked = "use_dpop_nonce" in r.headers.get("www-authenticate", "") or (
        r.status_code == 400 and r.json().get("error") == "use_dpop_nonce"
    )
    return send(nonce) if nonce and asked else r


@pytest.mark.parametrize(
    ("mode", "example"),
    [("cookie", True), ("body", False)],
    indirect=["example"],
    ids=["cookie-nonces", "body"],
)
def test_tokens_copied_out_of_the_page_are_useless_without_its_key(
    example: Example, browser: WebDriver, mode: str
) -> None:
    """Cookie mode runs with DPoP nonces on (the copied proof then carries a good nonce:
    only its replay detection refuses it), body mode without."""
    events: list[Event] = []
    example.ts.on_event(events.append)
    page = Page(browser)
    page.start(f"{example.auth_url}/?mode={mode}")
    page.act("login")

    # An injected script copies the API call's headers; the refresh token comes from the
    # cookie jar (cookie mode) or from IndexedDB (body mode), as malware or XSS would.
    page.steal_requests()
    page.act("call-api")
    assert page.text("api-status") == "200"
    # With nonces the first try was answered use_dpop_nonce: the last one was accepted.
    call = [r for r in page.stolen() if r["url"].startswith(example.api_url)][-1]
    access_token = call["authorization"].removeprefix("DPoP ")
    if mode == "cookie":
        cookie = page.refresh_cookie()
        assert cookie is not None
        refresh_token = cookie["value"]
    else:
        refresh_token = page.stored_value("refresh-token")

    thief = DPoPKey()
    me = example.api_url + "/api/me"
    token_url = example.auth_url + "/token"
    at = {"authorization": f"DPoP {access_token}"}
    with httpx.Client(trust_env=False, timeout=WAIT) as http:
        # The access token: as a bearer token, with no proof, with the page's own proof
        # replayed (its nonce, if any, is still good), with a proof of the thief's key.
        # Each is a 401 challenge.
        for send, error in (
            (lambda _: {"authorization": f"Bearer {access_token}"}, "invalid_token"),
            (lambda _: at, "invalid_dpop_proof"),
            (lambda _: {**at, "dpop": call["dpop"]}, "invalid_dpop_proof"),
            (
                lambda nonce: {
                    **at,
                    "dpop": thief.proof(
                        me, htm="GET", access_token=access_token, nonce=nonce, iat=time.time()
                    ),
                },
                "invalid_dpop_proof",
            ),
        ):
            r = _as_a_client(lambda nonce, send=send: http.get(me, headers=send(nonce)))
            assert r.status_code == 401, r.headers.get("www-authenticate")
            assert f'error="{error}"' in r.headers["www-authenticate"]

        # The refresh token: without a proof, and with a proof of the thief's key.
        form = {
            "grant_type": "refresh_token",
            "client_id": f"spa-demo{'' if mode == 'cookie' else '-body'}",
        }
        browser_headers = {"origin": example.auth_url, CSRF_HEADER: "1"}
        if mode == "cookie":
            browser_headers["cookie"] = f"{COOKIE_NAME}={refresh_token}"
        else:
            form["refresh_token"] = refresh_token
        for with_proof in (False, True):

            def post(nonce: str | None, with_proof: bool = with_proof) -> httpx.Response:
                proof = thief.proof(token_url, nonce=nonce, iat=time.time())
                extra = {"dpop": proof} if with_proof else {}
                return http.post(token_url, data=form, headers={**browser_headers, **extra})

            r = _as_a_client(post)
            assert r.status_code == 400, r.text
            assert r.json()["error"] in ("invalid_grant", "invalid_dpop_proof"), r.text

    # Nothing the thief did rotated or revoked the session...
    assert not [e for e in events if e.name in ("rotated", "family_revoked", "reuse_detected")]
    assert example.ts.introspect(refresh_token)["active"] is True
    # ...so the page, which holds the key, carries on: API call and a silent refresh.
    page.act("call-api")
    assert page.text("api-trace") == "200"
    page.act("refresh")
    assert page.text("refresh-result") == "ok"
    page.act("call-api")
    assert page.text("api-trace") == "200" and page.text("status") == "signed-in"


FRAMES = 6


def test_tabs_that_start_together_take_turns_and_keep_the_session(
    example: Example, browser: WebDriver
) -> None:
    """Several copies of the page start at once (a browser restoring its tabs): each
    restores the session with a refresh. They take turns under one Web Lock, each with the
    cookie the previous one left, so every copy is signed in and nothing is revoked (README
    "Concurrent tabs"; with grace 0, presenting one token twice would be reuse)."""
    events: list[Event] = []
    example.ts.on_event(events.append)
    page = Page(browser)
    page.start(example.auth_url + "/")
    page.act("login")
    # Same-origin frames share the tab's cookie jar and its locks, like tabs do.
    browser.execute_script(
        """for (let i = 0; i < arguments[0]; i++) {
             const frame = document.createElement('iframe');
             frame.src = '/';
             document.body.appendChild(frame);
           }""",
        FRAMES,
    )
    frames = browser.find_elements(By.TAG_NAME, "iframe")

    def started(frame: Any) -> bool:
        browser.switch_to.frame(frame)
        try:
            return int(page.text("seq")) >= 1
        finally:
            browser.switch_to.default_content()

    for frame in frames:
        page.wait_for("a frame to start", lambda frame=frame: started(frame))
    statuses = []
    for frame in frames:
        browser.switch_to.frame(frame)
        statuses.append((page.text("status"), page.text("refresh-result")))
        browser.switch_to.default_content()
    assert statuses == [("signed-in", "ok")] * FRAMES
    names = [e.name for e in events]
    assert names.count("rotated") == FRAMES
    assert "reuse_detected" not in names and "family_revoked" not in names
    assert "refresh_conflict" not in names
