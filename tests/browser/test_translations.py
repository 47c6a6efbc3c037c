import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from bots.models import Bot
from i18n.models import Translation

Shot = Callable[[Page, str], Path]


def _cell(page: Page, key: str, locale: str) -> Locator:
    return page.locator(
        f'#translations-table tr[data-key="{key}"] td[data-locale="{locale}"]'
    )


def _counts(page: Page, locale: str) -> tuple[str, str, str]:
    row = page.locator(f'#translations-counts tr[data-locale="{locale}"]')

    return (
        row.locator("td.count-ok").inner_text(),
        row.locator("td.count-missing").inner_text(),
        row.locator("td.count-outdated").inner_text(),
    )


def _edit(page: Page, key: str, locale: str, text: str) -> None:
    cell = _cell(page, key, locale)
    cell.locator("details.cell-edit summary").click()
    cell.locator('textarea[name="form_other"]').fill(text)
    cell.get_by_role("button", name="Save").click()
    expect(page.locator(".messagelist .success")).to_have_text(
        f"Saved the text of {key} in {locale}."
    )


def test_translations_page_shows_missing_and_outdated_texts(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    page = staff_page
    Translation.objects.filter(bot=demo_bot, locale="uk", key="help.text").delete()
    page.goto(f"{base_url}/admin/bots/bot/{demo_bot.pk}/change/")
    page.locator(".object-tools").get_by_role("link", name="Translations").click()
    expect(page).to_have_url(
        f"{base_url}/admin/bots/bot/{demo_bot.pk}/studio/translations/"
    )
    ok_en, missing_en, outdated_en = _counts(page, "en")
    assert (missing_en, outdated_en) == ("0", "0")
    assert _counts(page, "uk") == (str(int(ok_en) - 1), "1", "0")
    expect(_cell(page, "help.text", "uk")).to_have_attribute("data-state", "missing")
    shot(page, "one-missing")

    # The source text changes: its Ukrainian translation is now behind it.
    _edit(page, "order.size", "en", "Which cup size?")

    expect(_cell(page, "order.size", "en")).to_have_attribute("data-state", "ok")
    expect(_cell(page, "order.size", "en").locator(".text")).to_have_text(
        "Which cup size?"
    )
    expect(_cell(page, "order.size", "uk")).to_have_attribute("data-state", "outdated")
    assert _counts(page, "uk") == (str(int(ok_en) - 2), "1", "1")

    page.get_by_label("Only missing and outdated").check()

    # The browser keeps the anchor of the cell just saved.
    expect(page).to_have_url(re.compile(r"/studio/translations/\?only=problems(#|$)"))
    rows = page.locator("#translations-table tbody tr")
    expect(rows).to_have_count(2)
    assert [row.get_attribute("data-key") for row in rows.all()] == [
        "help.text",
        "order.size",
    ]
    shot(page, "only-problems")

    _edit(page, "order.size", "uk", "Який розмір чашки?")

    assert _counts(page, "uk") == (str(int(ok_en) - 1), "1", "0")
    problems = page.locator(
        '#translations-table td[data-state="missing"],'
        ' #translations-table td[data-state="outdated"]'
    )
    expect(problems).to_have_count(1)
    expect(_cell(page, "help.text", "uk")).to_have_attribute("data-state", "missing")
    assert Translation.objects.get(
        bot=demo_bot, locale="uk", key="order.size"
    ).forms == {"other": "Який розмір чашки?"}
    shot(page, "outdated-fixed")
