"""The "Try it" page's own script: edits in place, a draft's errors."""

import copy
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from bots.models import Bot, Transcript

Shot = Callable[[Page, str], Path]


def _open(page: Page, base_url: str, bot: Bot) -> None:
    page.goto(f"{base_url}/admin/bots/bot/{bot.pk}/studio/try/")
    expect(page.locator("#try-locale option")).to_have_count(2)


def _send(page: Page, text: str) -> None:
    page.fill("#try-input", text)
    page.click("#try-send")


def test_a_draft_edits_its_message_in_place_and_is_saved_as_a_test(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    draft = copy.deepcopy(demo_bot.live_version.source)  # type: ignore[union-attr]
    draft["nodes"]["help"] = {
        "type": "menu.v1",
        "text": "help.text",
        "rows": [[{"label": "main.order", "goto": "order"}]],
    }
    demo_bot.draft_spec = draft
    demo_bot.save(update_fields=["draft_spec"])
    page = staff_page
    _open(page, base_url, demo_bot)
    page.select_option("#try-version", "draft")
    expect(page.locator("#try-log > *")).to_have_count(0)

    _send(page, "/start")
    page.locator(".try-button", has_text="❓ Help").click()

    bubble = page.locator(".try-bot")
    expect(bubble).to_have_count(1)
    expect(bubble).to_have_class("try-bubble try-bot try-edited")
    expect(bubble).to_contain_text("I take drink orders for the café.")
    expect(bubble.locator(".try-button")).to_have_text(["☕ Order a drink"])
    shot(page, "edited-in-place")

    page.fill("#try-save-name", "Help from the menu")
    page.click("#try-save")

    expect(page.locator("#try-saved")).to_have_text(
        "Saved “Help from the menu” (2 steps) as a draft test."
    )
    transcript = Transcript.objects.get(name="Help from the menu")
    assert (transcript.is_draft, transcript.locale, len(transcript.steps)) == (
        True,
        "en",
        2,
    )


def test_an_invalid_draft_shows_its_errors_and_cannot_be_sent_to(
    staff_page: Page, base_url: str, demo_bot: Bot
) -> None:
    draft = copy.deepcopy(demo_bot.live_version.source)  # type: ignore[union-attr]
    draft["nodes"]["main"]["rows"][0][0]["goto"] = "nowhere"
    demo_bot.draft_spec = draft
    demo_bot.save(update_fields=["draft_spec"])
    page = staff_page
    _open(page, base_url, demo_bot)

    page.select_option("#try-version", "draft")

    expect(page.locator("#try-errors li")).to_have_text(
        ["nodes.main.rows[0][0].goto: There is no node 'nowhere'."]
    )
    expect(page.locator("#try-input")).to_be_disabled()
