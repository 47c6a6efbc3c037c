import csv
import io
import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import FilePayload, Locator, Page, expect

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


def _download(page: Page, link: str) -> bytes:
    with page.expect_download() as download:
        page.click(link)

    return download.value.path().read_bytes()


def _with_text(content: bytes, *, key: str, locale: str, text: str) -> bytes:
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
    for row in rows:
        if row[:3] == [key, locale, ""]:
            row[3] = text
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)

    return out.getvalue().encode("utf-8")


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


def test_a_csv_export_edited_and_imported_exports_again_byte_for_byte(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    page = staff_page
    page.goto(f"{base_url}/admin/bots/bot/{demo_bot.pk}/studio/translations/")
    exported = _download(page, "#export-csv")
    edited = _with_text(
        exported, key="order.size", locale="uk", text="Який розмір, чашки?"
    )
    assert edited != exported

    upload: FilePayload = {"name": "demo.csv", "mimeType": "text/csv", "buffer": edited}
    page.set_input_files("#id_file", files=upload)
    page.locator("#import-form").get_by_role("button", name="Preview").click()

    preview = page.locator("#import-preview")
    expect(preview.locator(".count-added")).to_have_text("0")
    expect(preview.locator(".count-changed")).to_have_text("1")
    expect(preview.locator("tr.changed")).to_contain_text("order.size")
    shot(page, "import-preview")
    page.click("#import-apply")

    expect(page.locator(".messagelist .success")).to_contain_text(
        "Imported: 0 added, 1 changed,"
    )
    expect(_cell(page, "order.size", "uk").locator(".text")).to_have_text(
        "Який розмір, чашки?"
    )
    assert _download(page, "#export-csv") == edited
    shot(page, "imported")
