"""Browser tests: Debian's Chromium, driven by Playwright, against a live server.

Playwright's sync API marks its event loop as running in the test's thread
for as long as it is started, which would make Django refuse ORM calls and
``asyncio.run`` fail in any test that shares the process. The browser is
therefore package-scoped: pytest stops it as soon as the next test to run is
not a browser test, and Django's async guard is relaxed only while it runs.
"""

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from bots.models import Bot
from bots.services.bots import demo_bot_load
from bots.sql import sql_deprovision

CHROMIUM = Path(os.environ.get("BROWSER_CHROMIUM", "/usr/bin/chromium"))
# Without the networking flags Chromium keeps trying to reach Google's
# services, which the closed network here refuses, and startup stalls.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
# Generous for a page that loads its scripts from the live server, short
# enough that a missing element fails the test quickly.
TIMEOUT_MS = 10_000
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
README_WIDTH = 1200
# The window's height before the picture grows to the page's own height.
README_HEIGHT = 600
STAFF_PASSWORD = "browser-test-Passw0rd!"


@dataclass(frozen=True)
class Staff:
    username: str
    password: str


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: the browser tests need "
            "Debian's chromium package (apt-get install -y chromium).",
            pytrace=False,
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as driver:
            yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    # A script error on a studio page is a defect even when the flow passed.
    assert errors == []


@pytest.fixture
def base_url(django_db_setup: None, live_server: object) -> str:
    # The test database must exist before the server's first request opens
    # the connection pool, or the pool keeps the development database's name.
    return str(live_server).rstrip("/")


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """Save numbered full-page screenshots under test-artifacts/browser/<test>/."""
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    taken: list[Path] = []

    def take(page: Page, name: str) -> Path:
        path = folder / f"{len(taken) + 1:02d}-{name}.png"
        # The admin's sticky sidebar would be drawn where the window was
        # scrolled to, in the middle of a full-page picture.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)

        return path

    return take


@pytest.fixture
def readme_shot() -> Callable[..., Path | None]:
    """With README_SCREENSHOTS=1, save the page as docs/screenshots/<name>.png.

    The README's pictures are README_WIDTH pixels wide, with the admin's
    sidebar folded away. A page drawn wider than that (``css_width``) is
    shown as a browser zoomed out to fit would show it. The page is opened
    again, in a window of that size, as the same member of staff; the
    ``ready`` locator says when it has finished loading. Without the
    variable nothing is written, so that a test run leaves the tree clean.
    """

    def take(
        page: Page, name: str, *, ready: str, css_width: int = README_WIDTH
    ) -> Path | None:
        if os.environ.get("README_SCREENSHOTS") != "1":
            return None
        browser = page.context.browser
        assert browser is not None
        scale = README_WIDTH / css_width
        context = browser.new_context(
            storage_state=page.context.storage_state(),
            viewport={"width": css_width, "height": round(README_HEIGHT / scale)},
            device_scale_factor=scale,
            locale="en-GB",
        )
        context.add_init_script(
            "localStorage.setItem('django.admin.navSidebarIsOpen', 'false')"
        )
        try:
            copy = context.new_page()
            copy.goto(page.url)
            expect(copy.locator(ready).first).to_be_visible()
            path = README_SCREENSHOTS / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            copy.screenshot(path=str(path), full_page=True)
        finally:
            context.close()

        return path

    return take


@pytest.fixture
def staff(transactional_db: None, settings: Any) -> Staff:
    # The default hasher's deliberate slowness would cost each test a second;
    # the live server reads the same settings object.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = get_user_model().objects.create_superuser(
        username="olena",
        email="olena@example.com",
        password=STAFF_PASSWORD,
        first_name="Olena",
    )

    return Staff(username=user.get_username(), password=STAFF_PASSWORD)


def staff_login(page: Page, *, base_url: str, staff: Staff) -> None:
    """Log in through the admin's own login form."""
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", staff.username)
    page.fill("#id_password", staff.password)
    page.click("input[type=submit]")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


@pytest.fixture
def staff_page(page: Page, base_url: str, staff: Staff) -> Page:
    staff_login(page, base_url=base_url, staff=staff)

    return page


@pytest.fixture
def demo_bot(transactional_db: None) -> Iterator[Bot]:
    """The demo café bot in demo mode (no token), its spec published."""
    bot = demo_bot_load()
    yield bot
    sql_deprovision(bot=bot)
