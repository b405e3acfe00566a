"""End-to-end: the SPA example's "Your sessions" panel in headless Chromium (README
"Sessions"): it lists the user's own sessions, marks this tab's, and "Sign out other
sessions" ends every other one and nobody else's. Reuses the servers, the browser and the
page helpers of ``tests/test_example_browser.py`` (and its skip without Chromium)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from examples.run import Example
from examples.spa.auth_server import CLIENT_ID
from tests import test_example_browser as shared
from tests.test_example_browser import Page, browser, example  # noqa: F401 (fixtures)

pytestmark = getattr(shared, "pytestmark", [])


def listed(page: Page) -> list[tuple[str, str]]:
    items = page.driver.find_elements(By.CSS_SELECTOR, "#sessions li")
    return [
        (i.get_attribute("data-sid") or "", i.get_attribute("data-current") or "") for i in items
    ]


def test_the_sessions_panel_lists_and_signs_out_the_other_sessions(
    example: Example,  # noqa: F811 (the fixture imported above)
    browser: WebDriver,  # noqa: F811
) -> None:
    page = Page(browser)
    browser.get(example.auth_url + "/")
    page.wait_for("the page to start", lambda: int(page.text("seq")) >= 1)
    page.act("login")
    ts = example.ts
    [mine] = [s.session_id for s in ts.user_sessions("alice")]
    # Two more sessions of alice (other devices) and one of bob, made out of band.
    others = {ts.issue(subject="alice", client_id=CLIENT_ID).session_id for _ in range(2)}
    bob = ts.issue(subject="bob", client_id=CLIENT_ID).session_id

    page.act("refresh")  # this tab's session now has a last use: Chromium's IP and agent
    page.act("list-sessions")
    shown = listed(page)
    assert sorted(shown) == sorted([(mine, "true"), *((sid, "false") for sid in others)])
    assert bob not in {sid for sid, _ in shown}
    current = browser.find_element(By.CSS_SELECTOR, f'#sessions li[data-sid="{mine}"]').text
    assert "(this session)" in current and "127.0.0.1" in current and "Chrome" in current

    page.act("revoke-others")
    assert listed(page) == [(mine, "true")]
    assert [s.session_id for s in ts.user_sessions("alice")] == [mine]
    assert [s.session_id for s in ts.user_sessions("bob")] == [bob]
    page.act("call-api")  # this tab's session lives on
    assert page.text("api-status") == "200"
