import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from bots.models import Bot
from i18n.models import Translation
from tests.factories import BotFactory

Shot = Callable[[Page, str], Path]

TYPO_SPEC: dict[str, Any] = {
    "start": "main",
    "default_locale": "en",
    "locales": ["en"],
    "nodes": {
        "main": {
            "type": "menu.v1",
            "text": "main.text",
            "rows": [[{"label": "main.again", "goto": "mian"}]],
        }
    },
}
FIXED_SPEC: dict[str, Any] = {
    **TYPO_SPEC,
    "nodes": {
        "main": {
            "type": "menu.v1",
            "text": "main.text",
            "rows": [[{"label": "main.again", "goto": "main"}]],
        }
    },
}


def _bot_with_strings() -> Bot:
    bot = BotFactory.create(name="Flower shop")
    for key, text in [("main.text", "Hello!"), ("main.again", "Again")]:
        Translation.objects.create(bot=bot, locale="en", key=key, forms={"other": text})

    return bot


def _open_editor(page: Page, base_url: str, bot: Bot) -> None:
    page.goto(f"{base_url}/admin/bots/bot/{bot.pk}/change/")
    expect(page.locator("#spec-problems-status")).to_have_attribute(
        "data-state", "done"
    )


def _paste_spec(page: Page, spec: dict[str, Any]) -> None:
    """Switch the editor to code mode and paste the spec over its text."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#spec-editor button.jsoneditor-modes")
    page.get_by_role("button", name="Code").click()
    page.click("#spec-editor .ace_content")
    page.keyboard.press("Control+A")
    page.evaluate(
        "text => navigator.clipboard.writeText(text)", json.dumps(spec, indent=2)
    )
    page.keyboard.press("Control+V")


def _problems(page: Page) -> list[tuple[str | None, str | None, str]]:
    items = page.locator("#spec-problems li")

    return [
        (
            item.get_attribute("data-path"),
            item.get_attribute("data-severity"),
            item.locator("span").inner_text(),
        )
        for item in items.all()
    ]


def test_error_is_shown_at_its_path_and_the_fixed_spec_saves(
    staff_page: Page, base_url: str, shot: Shot
) -> None:
    page = staff_page
    bot = _bot_with_strings()
    _open_editor(page, base_url, bot)
    expect(page.locator("#spec-problems-status")).to_have_text("No problems.")
    shot(page, "empty-draft")

    _paste_spec(page, TYPO_SPEC)

    expect(page.locator("#spec-problems-status")).to_have_text("1 error.")
    assert _problems(page) == [
        ("nodes.main.rows[0][0].goto", "error", "There is no node 'mian'.")
    ]
    shot(page, "error-at-its-path")

    # Fixed where it is: the misspelt word double-clicked and retyped.
    typo = page.locator("#spec-editor .ace_string", has_text='"mian"')
    typo.scroll_into_view_if_needed()
    box = typo.bounding_box()
    assert box is not None
    page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.type("main")

    expect(page.locator("#spec-problems-status")).to_have_text("No problems.")
    expect(page.locator("#spec-problems li")).to_have_count(0)
    shot(page, "fixed")

    page.click("input[name=_continue]")

    expect(page.locator(".messagelist .success")).to_contain_text("Flower shop")
    expect(page.locator("#spec-problems-status")).to_have_text("No problems.")
    bot.refresh_from_db()
    assert bot.draft_spec == FIXED_SPEC
    shot(page, "saved")

    page.locator(".object-tools").get_by_role("link", name="Diagram").click()

    expect(page.locator("#diagram-summary")).to_have_text(
        "1 node, 1 way between them, 1 way in."
    )
    expect(page.locator("#diagram-canvas svg #node-main")).to_contain_text("Hello!")
    shot(page, "diagram-of-the-draft")


def test_saving_a_draft_with_an_error_shows_it_and_keeps_the_stored_draft(
    staff_page: Page, base_url: str, shot: Shot
) -> None:
    page = staff_page
    bot = _bot_with_strings()
    Bot.objects.filter(pk=bot.pk).update(draft_spec=FIXED_SPEC)
    _open_editor(page, base_url, bot)
    _paste_spec(page, TYPO_SPEC)
    expect(page.locator("#spec-problems-status")).to_have_text("1 error.")

    page.click("input[name=_continue]")

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-draft_spec .errorlist")).to_have_text(
        "nodes.main.rows[0][0].goto: There is no node 'mian'."
    )
    bot.refresh_from_db()
    assert bot.draft_spec == FIXED_SPEC
    shot(page, "refused")


def test_the_schema_offers_node_types_and_the_fields_of_the_type_chosen(
    staff_page: Page, base_url: str, shot: Shot
) -> None:
    page = staff_page
    bot = _bot_with_strings()
    Bot.objects.filter(pk=bot.pk).update(draft_spec=FIXED_SPEC)
    _open_editor(page, base_url, bot)
    page.click("#spec-editor button.jsoneditor-expand-all")
    node_type = page.locator("#spec-editor select[id^='type_']")

    expect(node_type).to_have_value("menu.v1")
    assert node_type.locator("option").all_inner_texts() == [
        "llm.v1",
        "menu.v1",
        "reply_template.v1",
        "sql_exec.v1",
        "wizard.v1",
    ]
    shot(page, "node-types")

    node_type.select_option("wizard.v1")

    expect(page.locator("#spec-problems-status")).to_have_text("4 errors.")
    assert _problems(page) == [
        ("nodes.main.steps", "error", "Field required"),
        ("nodes.main.next", "error", "Field required"),
        ("nodes.main.rows", "error", "Extra inputs are not permitted"),
        ("nodes.main.text", "error", "Extra inputs are not permitted"),
    ]

    # Renaming "text" offers the wizard's fields that the node lacks.
    field = page.locator("#spec-editor div.jsoneditor-field", has_text="text")
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("s")

    expect(page.locator("#spec-editor .autocomplete.dropdown .item")).to_have_text(
        ["steps"]
    )
    shot(page, "field-completion")
