from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from bots.models import Bot
from tests.browser.conftest import Staff, staff_login

Shot = Callable[[Page, str], Path]


def test_staff_logs_in_through_the_admin_form(
    page: Page, base_url: str, staff: Staff, shot: Shot
) -> None:
    page.goto(f"{base_url}/admin/")
    expect(page).to_have_url(f"{base_url}/admin/login/?next=/admin/")
    shot(page, "login-form")

    staff_login(page, base_url=base_url, staff=staff)

    expect(page).to_have_url(f"{base_url}/admin/")
    expect(page.locator("#site-name")).to_be_visible()
    expect(page.locator("#bots-bot").get_by_role("link", name="Bots")).to_be_visible()
    shot(page, "admin-index")


def test_wrong_password_is_refused_on_the_login_form(
    page: Page, base_url: str, staff: Staff, shot: Shot
) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", staff.username)
    page.fill("#id_password", "not-the-password")
    page.click("input[type=submit]")

    expect(page.locator(".errornote")).to_contain_text(
        "Please enter the correct username and password"
    )
    expect(page.locator("#user-tools")).to_have_count(0)
    shot(page, "login-refused")


def test_staff_creates_a_bot_with_the_add_form(
    staff_page: Page, base_url: str, shot: Shot
) -> None:
    page = staff_page
    page.goto(f"{base_url}/admin/bots/bot/")
    page.get_by_role("link", name="Add bot").click()
    expect(page).to_have_url(f"{base_url}/admin/bots/bot/add/")
    page.fill("#id_name", "Flower shop")
    page.fill("#id_slug", "flower-shop")
    shot(page, "add-form")

    page.click("input[name=_continue]")

    bot = Bot.objects.get(slug="flower-shop")
    expect(page).to_have_url(f"{base_url}/admin/bots/bot/{bot.pk}/change/")
    expect(page.locator(".messagelist .success")).to_contain_text("Flower shop")
    assert (bot.name, bot.default_locale, bot.token, bot.live_version_id) == (
        "Flower shop",
        "en",
        "",
        None,
    )
    shot(page, "change-form")
