from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from bots.models import Bot, Transcript

Shot = Callable[[Page, str], Path]

DEMO_TESTS = 12


def _open_tests(page: Page, base_url: str, bot: Bot) -> None:
    page.goto(f"{base_url}/admin/bots/bot/{bot.pk}/change/")
    page.locator(".object-tools").get_by_role("link", name="Tests").click()
    expect(page).to_have_url(f"{base_url}/admin/bots/bot/{bot.pk}/studio/tests/")


def test_the_demo_bots_conversation_tests_all_pass(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    page = staff_page
    _open_tests(page, base_url, demo_bot)
    expect(page.locator("#transcripts-table tr.transcript-row")).to_have_count(
        DEMO_TESTS
    )
    expect(page.locator("#test-results")).to_have_count(0)
    shot(page, "tests")

    page.click("#run-tests-button")

    expect(page.locator("#test-summary")).to_have_text(f"{DEMO_TESTS} passed, 0 failed")
    expect(page.locator(".test-result.pass")).to_have_count(DEMO_TESTS)
    expect(page.locator(".test-result.fail")).to_have_count(0)
    expect(page.locator('.test-result[data-name="en: menu and help"]')).to_have_text(
        "PASS en: menu and help (en)"
    )
    shot(page, "all-passed")


def test_a_conversation_saved_in_try_it_becomes_a_test_that_passes(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    page = staff_page
    page.goto(f"{base_url}/admin/bots/bot/{demo_bot.pk}/studio/try/")
    expect(page.locator("#try-locale option")).to_have_count(2)
    page.select_option("#try-locale", "uk")
    page.fill("#try-input", "/start")
    page.click("#try-send")
    page.locator("#try-log .try-button").filter(has_text="❓ Допомога").click()
    expect(page.locator("#try-log .try-bot")).to_have_count(2)
    page.fill("#try-save-name", "uk: help from the menu")
    page.click("#try-save")
    expect(page.locator("#try-saved")).to_have_text(
        "Saved “uk: help from the menu” (2 steps) as a draft test."
    )
    saved = Transcript.objects.get(bot=demo_bot, name="uk: help from the menu")
    assert (
        saved.locale,
        saved.is_draft,
        [step.get("say") for step in saved.steps],
    ) == (
        "uk",
        True,
        ["/start", None],
    )
    shot(page, "saved-in-try-it")

    _open_tests(page, base_url, demo_bot)
    row = page.locator('tr.transcript-row[data-name="uk: help from the menu"]')
    expect(row).to_contain_text("draft: not run on publish")
    row.locator(".review-button").click()

    row = page.locator('tr.transcript-row[data-name="uk: help from the menu"]')
    expect(row).to_contain_text("runs on publish")
    expect(row.locator(".draft-marker")).to_have_count(0)
    saved.refresh_from_db()
    assert saved.is_draft is False
    page.select_option("#id_against", "live")
    page.click("#run-tests-button")

    expect(page.locator("#test-summary")).to_have_text(
        f"{DEMO_TESTS + 1} passed, 0 failed"
    )
    expect(
        page.locator('.test-result.pass[data-name="uk: help from the menu"]')
    ).to_have_text("PASS uk: help from the menu (uk)")
    shot(page, "reviewed-and-passed")
