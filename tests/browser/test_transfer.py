import json
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import FilePayload, Page, expect

from bots.models import Bot
from bots.sql import sql_deprovision

Shot = Callable[[Page, str], Path]


def _export(page: Page) -> bytes:
    with page.expect_download() as download:
        page.locator(".object-tools").get_by_role("link", name="Export").click()

    return download.value.path().read_bytes()


def _import(page: Page, content: bytes, *, slug: str = "", replace: bool) -> None:
    page.click("#import-bot-link")
    upload: FilePayload = {
        "name": "demo.bot.json",
        "mimeType": "application/json",
        "buffer": content,
    }
    page.set_input_files("#id_file", files=upload)
    page.fill("#id_slug", slug)
    page.set_checked("#id_replace", replace)
    page.locator("#import-bot-form input[type=submit]").click()


def test_an_exported_bot_file_edited_and_imported_replaces_the_bot(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    page = staff_page
    page.goto(f"{base_url}/admin/bots/bot/{demo_bot.pk}/change/")
    data = json.loads(_export(page))
    data["bot"]["name"] = "Café on the corner"
    edited = json.dumps(data).encode()

    # A new bot gets the demo's orders table from the file: its tests pass.
    page.goto(f"{base_url}/admin/bots/bot/")
    _import(page, edited, slug="cafe-copy", replace=False)

    expect(page.locator(".messagelist .success")).to_have_text(
        "Café on the corner imported."
    )
    copied = Bot.objects.get(slug="cafe-copy")
    try:
        assert copied.sql_schema_postgresql == demo_bot.sql_schema_postgresql
        assert copied.live_version is not None
        shot(page, "copy-imported")
    finally:
        sql_deprovision(bot=copied)

    page.goto(f"{base_url}/admin/bots/bot/")
    _import(page, edited, replace=True)

    expect(page.locator(".messagelist .success")).to_have_text(
        "Café on the corner imported."
    )
    demo_bot.refresh_from_db()
    assert demo_bot.name == "Café on the corner"
    assert json.loads(_export(page)) == data
    shot(page, "replaced")
